package cutover

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWarmStateRoundTripAndRefusals: the state survives a reopen, is written 0600, and a file for
// another server or a damaged one is named and left as it is.
func TestWarmStateRoundTripAndRefusals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db.warm.json")
	s, err := OpenWarmState(path, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	want := WarmRoomState{Member: alice, From: "t9", Events: 120, Pages: 2}
	if err := s.Put("!r:example.org", want); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v, want mode 0600", fi, err)
	}
	again, err := OpenWarmState(path, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Get("!r:example.org"); got != want {
		t.Errorf("reopened state %+v, want %+v", got, want)
	}
	if got := again.Get("!other:example.org"); got != (WarmRoomState{}) {
		t.Errorf("a room never warmed: %+v", got)
	}
	if _, err := OpenWarmState(path, "other.org"); err == nil || !strings.Contains(err.Error(), `is for server "example.org"`) {
		t.Errorf("state of another server: %v", err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWarmState(path, "example.org"); err == nil || !strings.Contains(err.Error(), "is damaged") {
		t.Errorf("damaged state: %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "{not json" {
		t.Error("the damaged state file was changed")
	}
}
