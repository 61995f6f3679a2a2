package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/world"
)

// TestUnreachableSynapseIsOneLine: a Synapse that does not answer is one line naming its URL, the
// key that names it and what to check, with exit status 2, for each command that talks to it.
func TestUnreachableSynapseIsOneLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	w, err := world.Generate(world.Options{Seed: 23, Rooms: -1, Users: -1, MessagesPerRoom: 1})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath, _, err := writeDemoConfig(dir, w, closed, "token")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "-config", cfgPath},
		{"export", "-config", cfgPath, "-out", filepath.Join(dir, "export")},
	} {
		code, _, errOut := runShim(t, nil, args...)
		want := "shim " + args[0] + ": Synapse at " + closed + " does not answer (connection refused): check that it runs and listens there, and that synapse.url in " + cfgPath + " names it\n"
		if code != exitCannotRun || !strings.HasSuffix(errOut, want) || strings.Contains(errOut, "synapseclient") {
			t.Errorf("shim %s: exit %d, want %d and the line\n%q\ngot\n%q", args[0], code, exitCannotRun, want, errOut)
		}
	}
}
