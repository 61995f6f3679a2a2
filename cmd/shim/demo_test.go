package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/verify"
)

// TestDemoRunsTheWholeFlow runs the demo: every step succeeds, every room a Conduit can host
// arrives whole, the v1 room and the room with no local member are named, and the files stay.
func TestDemoRunsTheWholeFlow(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runShim(t, nil, "demo", "-messages", "40", "-dir", dir)
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, errOut)
	}
	for i, step := range []string{"check", "export", "archive", "import", "rejoin", "warm", "verify"} {
		if !strings.Contains(out, fmt.Sprintf("%2d. %-8s ", i+1, step)) {
			t.Errorf("step %d (%s) missing from the output", i+1, step)
		}
	}
	if !strings.Contains(out, "Everything arrived") || strings.Count(out, " whole\n") < 6 ||
		!strings.Contains(out, "not hostable (room version 1)") || !strings.Contains(out, "no local member") {
		t.Fatalf("demo output:\n%s", out)
	}
	if !strings.Contains(out, "0 differ, 0 missing") {
		t.Fatalf("users did not all arrive:\n%s", out)
	}
	// The steps' different counts are explained, and the generator's names stay inside.
	if !strings.Contains(out, "\nCounts: Synapse holds ") || !strings.Contains(out, "so verify expects") || !strings.Contains(out, "joins of its own") {
		t.Errorf("no word on why the counts differ:\n%s", out)
	}
	for _, kind := range []string{world.KindOrdinary, world.KindRemoteMembers, world.KindAllLeft, world.KindJoinedVisibility} {
		if strings.Contains(out, kind) {
			t.Errorf("the generator's room kind %q is shown:\n%s", kind, out)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "verify", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep verify.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	for _, u := range rep.Users {
		if u.Status != verify.UserSkipped && u.Sessions != verify.UserOK && u.Sessions != verify.AspectNone {
			t.Errorf("user %s: sessions %q, want every device's session carried", u.UserID, u.Sessions)
		}
	}
	for _, f := range []string{"verify/report.json", "verify/report.md", "conduit/conduit.db", "export/manifest.json", "logs/7-verify.txt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the demo left no %s: %v", f, err)
		}
	}
	// verify ran while serve held the cache: it read the cache through serve, with no second copy.
	vlog, _ := os.ReadFile(filepath.Join(dir, "logs", "7-verify.txt"))
	if !strings.Contains(string(vlog), "the running shim serve holds the event cache") || strings.Contains(string(vlog), "temporary") || strings.Contains(string(vlog), "scratch") {
		t.Errorf("verify did not read the cache through the running serve:\n%s", vlog)
	}
}

// TestDemoServePrintsItsDetailsFirstAndKeepsServing: demo -serve prints one JSON line, its
// configuration works for archive, and for rejoin against the simulated Conduit it starts; the
// temporary folder it made (signing key, tokens) is gone once it stops.
func TestDemoServePrintsItsDetailsFirstAndKeepsServing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var stderr lockedBuffer
	go func() {
		done <- Run(ctx, []string{"demo", "-serve", "-messages", "30"}, &Env{Stdout: pw, Stderr: &stderr, Getenv: func(string) string { return "" }})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no first line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	var info demoInfo
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&info); err != nil {
		t.Fatalf("first line is not the demo's JSON: %v\n%s", err, line)
	}
	if info.ServerName == "" || info.AdminToken == "" || !strings.HasPrefix(info.SynapseURL, "http://127.0.0.1:") ||
		!strings.HasPrefix(info.ShimURL, "http://127.0.0.1:") || !strings.HasPrefix(info.TargetURL, "http://127.0.0.1:") ||
		!strings.HasPrefix(info.Dir, filepath.Join(tmp, "shim-demo-")) || len(info.Rooms) < 6 {
		t.Fatalf("demo info: %+v", info)
	}
	for _, r := range info.Rooms {
		if r.RoomID == "" || r.RoomVersion == "" || r.Events < 1 || r.LatestEventID == "" {
			t.Fatalf("room entry: %+v", r)
		}
	}
	st, err := os.Stat(info.SigningKeyPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key file: %v %v", st, err)
	}
	// The written configuration works for the other commands while the demo runs.
	code, out, errOut := runShim(t, nil, "archive", "-config", info.ConfigPath, "-j", "2")
	if code != 0 || !strings.Contains(out, "yes") {
		t.Fatalf("archive against the demo: exit %d\n%s\n%s", code, out, errOut)
	}
	// The hint on stderr (written before the JSON line) names the configuration in each command.
	if hint := stderr.String(); !strings.Contains(hint, "shim rejoin  -config "+info.ConfigPath+"\n") ||
		!strings.Contains(hint, "shim verify  -config "+info.ConfigPath+" -export "+filepath.Join(info.Dir, "export")+"\n") {
		t.Errorf("the hint does not name the configuration:\n%s", hint)
	}
	code, out, errOut = runShim(t, nil, "rejoin", "-config", info.ConfigPath)
	if code != 0 || !strings.Contains(out, "joined") {
		t.Fatalf("rejoin against the demo's simulated Conduit: exit %d\n%s\n%s", code, out, errOut)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("demo -serve exit %d after interrupt", code)
	}
	if _, err := os.Stat(info.Dir); !os.IsNotExist(err) {
		t.Fatalf("demo -serve left %s (signing key and tokens) behind: %v", info.Dir, err)
	}
}
