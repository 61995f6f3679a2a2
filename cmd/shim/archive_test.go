package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

// TestArchiveRotatedKeys archives a world whose first local events were signed by a key Synapse
// has since rotated: with the old key in homeserver.yaml every event verifies; without it the
// events it signed are rejected and archive exits 1 saying what to add.
func TestArchiveRotatedKeys(t *testing.T) {
	w, err := world.Generate(world.Options{Seed: 31, MessagesPerRoom: 12, OldKeyEvents: 4, NoV1Room: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.OldKeys) == 0 {
		t.Fatal("the world has no rotated key")
	}
	sim := synapsesim.New(synapsesim.Options{World: w})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	sim.URL = srv.URL

	run := func(dir string) (int, string) {
		cfg, _, err := writeDemoConfig(dir, w, srv.URL, sim.AdminToken())
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		code := Run(context.Background(), []string{"archive", "-config", cfg}, &Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
		return code, out.String() + errOut.String()
	}

	if code, out := run(t.TempDir()); code != 0 {
		t.Fatalf("archive with the old key configured: exit %d\n%s", code, out)
	}

	dir := t.TempDir()
	if _, _, err := writeDemoConfig(dir, w, srv.URL, sim.AdminToken()); err != nil {
		t.Fatal(err)
	}
	hs := filepath.Join(dir, "homeserver.yaml")
	data, err := os.ReadFile(hs)
	if err != nil {
		t.Fatal(err)
	}
	cut := strings.Index(string(data), "old_signing_keys:")
	if cut < 0 {
		t.Fatalf("homeserver.yaml has no old_signing_keys:\n%s", data)
	}
	// writeDemoConfig rewrites the file, so strip the old keys after each write.
	strip := func() {
		if err := os.WriteFile(hs, data[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	strip()
	cfg := filepath.Join(dir, "shim.yaml")
	var out, errOut bytes.Buffer
	code := Run(context.Background(), []string{"archive", "-config", cfg}, &Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
	if code != 1 {
		t.Fatalf("archive without the old key: exit %d, want 1\n%s%s", code, out.String(), errOut.String())
	}
	if msg := errOut.String(); !strings.Contains(msg, "failed signature verification") || !strings.Contains(msg, "old_signing_keys") {
		t.Fatalf("the error does not say what to add:\n%s", msg)
	}
}

// TestArchiveSummaryTotalsAndSkippedRoom: the totals row fills every column, and a room with no
// local member is named once, in the summary, not also in a log line.
func TestArchiveSummaryTotalsAndSkippedRoom(t *testing.T) {
	w, err := world.Generate(world.Options{Seed: 32, MessagesPerRoom: 6})
	if err != nil {
		t.Fatal(err)
	}
	var skipped string
	for _, r := range w.Rooms {
		if r.Kind == world.KindAllLeft {
			skipped = r.ID
		}
	}
	if skipped == "" {
		t.Fatal("the world has no room without local members")
	}
	sim := synapsesim.New(synapsesim.Options{World: w})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	sim.URL = srv.URL
	cfg, _, err := writeDemoConfig(t.TempDir(), w, srv.URL, sim.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runShim(t, nil, "archive", "-config", cfg)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(out, "\n")
	header := strings.Fields(lines[0])
	var totals []string
	for _, l := range lines {
		if strings.Contains(l, " rooms ") {
			totals = strings.Fields(strings.Replace(l, " rooms ", "_rooms ", 1))
		}
	}
	if len(totals) != len(header) {
		t.Errorf("the totals row has %d cells for %d columns (a blank cell?):\n%s", len(totals), len(header), out)
	}
	if n := strings.Count(out+errOut, skipped); n != 1 {
		t.Errorf("the skipped room %s is named %d times, want once:\n%s\n%s", skipped, n, out, errOut)
	}
}
