package verify

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportFiles(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	r, evs := linearRoom("!c:example.org", 30, alice)
	src.rooms[r.RoomID], src.events[r.RoomID] = r, evs
	fr := targetRoom(r, evs)
	fr.timeline = fr.timeline[:20]
	tgt.rooms[r.RoomID] = fr
	r2, evs2 := linearRoom("!o:example.org", 5, alice)
	src.rooms[r2.RoomID], src.events[r2.RoomID] = r2, evs2
	tgt.rooms[r2.RoomID] = targetRoom(r2, evs2)
	src.users[alice] = exportedUser(alice)
	holdUser(tgt, src.users[alice])
	tgt.devices[alice] = tgt.devices[alice][1:]
	rep := run(t, src, tgt, func(c *Config) { c.TargetURL, c.SourceName = "http://conduit.test", "export" })

	dir := filepath.Join(t.TempDir(), "out")
	jp, mp, err := WriteFiles(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, jp, mp} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: others may read it", p, fi.Mode().Perm())
		}
	}
	data, err := os.ReadFile(jp)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Format != ReportFormat || back.Result != ResultMissing || back.Summary.EventsMissing != 10 || len(back.Rooms) != 2 || len(back.Users) != 1 {
		t.Fatalf("report.json read back: %+v", back)
	}
	md, err := os.ReadFile(mp)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"SECRETHASH", "SECRET-SESSION", `"pk"`, "public_key"} {
		if bytes.Contains(data, []byte(secret)) || bytes.Contains(md, []byte(secret)) {
			t.Errorf("the report holds %q", secret)
		}
	}
	text := string(md)
	iSummary, iRooms, iUsers := strings.Index(text, "## Summary"), strings.Index(text, "## Rooms with problems"), strings.Index(text, "## Users with problems")
	if iSummary < 0 || iSummary > iRooms || iRooms > iUsers {
		t.Fatalf("sections out of order or missing:\n%s", text)
	}
	if !strings.Contains(text[iRooms:iUsers], "`!c:example.org`") || strings.Contains(text[iRooms:iUsers], "!o:example.org") {
		t.Errorf("rooms with problems should list !c and only it:\n%s", text[iRooms:iUsers])
	}
	if !strings.Contains(text[iUsers:], "device BBB: missing") {
		t.Errorf("users with problems does not name the missing device:\n%s", text[iUsers:])
	}
	if !strings.Contains(text, "**10 missing**") {
		t.Errorf("missing count not in the Markdown:\n%s", text)
	}

	var out bytes.Buffer
	if err := WriteSummary(&out, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "room !c:example.org: missing, 10 of 30 events missing") ||
		!strings.Contains(out.String(), "user @alice:example.org: missing: device BBB: missing") {
		t.Errorf("summary:\n%s", out.String())
	}
}

func TestMarkdownEscapesIDs(t *testing.T) {
	if got := mdCode("a`b"); got != "``a`b``" {
		t.Errorf("mdCode = %q", got)
	}
	if got := mdText("<script>*x*|"); strings.ContainsAny(strings.NewReplacer("\\*", "", "\\|", "").Replace(got), "<*|") {
		t.Errorf("mdText = %q", got)
	}
}
