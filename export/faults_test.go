package export

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
)

// TestFaultsStillComplete has Synapse answer 500s, 429s and too late (timeouts) on a fifth of all
// requests: the export retries its way through and writes exactly what a clean run writes.
func TestFaultsStillComplete(t *testing.T) {
	w := testWorld(t, smallWorld)
	clean := synapsesim.Start(t, synapsesim.Options{World: w})
	ref := filepath.Join(t.TempDir(), "ref")
	runExport(t, exportConfig(clean, ref))
	want := readDir(t, ref)

	sim := synapsesim.Start(t, synapsesim.Options{World: w, Seed: 77})
	f := sim.Faults()
	rules := map[string]*synapsesim.Rule{
		"500":     f.FailRandomly("*", 0.1),
		"429":     f.Add(synapsesim.Fault{Kind: synapsesim.FaultError, Status: 429, Probability: 0.07}),
		"timeout": f.Add(synapsesim.Fault{Kind: synapsesim.FaultDelay, Delay: 2 * time.Second, Probability: 0.03}),
		// Corrupted state: caught by the event checks, the room is tried again.
		"tamper": f.TamperNext("fed.state", 2),
	}
	dir := filepath.Join(t.TempDir(), "out")
	cfg := exportConfig(sim, dir)
	// Long enough that only the 2 s delays time out: a login-as answer lost to a timeout while
	// the race detector slows the simulator would leave a token nobody can log out (it expires
	// within the hour), which is Synapse's behaviour too, not the exporter's fault.
	cfg.Synapse.Timeout = time.Second
	cfg.Synapse.MaxAttempts = 10
	s := runExport(t, cfg)
	for name, r := range rules {
		if r.Hits() == 0 {
			t.Errorf("fault %s never happened", name)
		}
	}
	t.Logf("%d requests; faults: 500 %d, 429 %d, timeout %d, tampered %d", s.Requests,
		rules["500"].Hits(), rules["429"].Hits(), rules["timeout"].Hits(), rules["tamper"].Hits())
	compareExports(t, readDir(t, dir), want)
	if n := sim.LiveLoginTokens(); n != 0 {
		t.Errorf("%d login-as tokens left valid", n)
	}
}

// TestFaultsStopWithNamedError has Synapse fail so often that retries run out: the export stops
// with an error naming the items and the endpoints that failed, every file it wrote is right,
// and a rerun against a healthy Synapse finishes the job.
func TestFaultsStopWithNamedError(t *testing.T) {
	w := testWorld(t, smallWorld)
	clean := synapsesim.Start(t, synapsesim.Options{World: w})
	ref := filepath.Join(t.TempDir(), "ref")
	runExport(t, exportConfig(clean, ref))
	want := readDir(t, ref)

	sim := synapsesim.Start(t, synapsesim.Options{World: w, Seed: 78})
	rule := sim.Faults().FailRandomly("*.*", 0.35)
	dir := filepath.Join(t.TempDir(), "out")
	cfg := exportConfig(sim, dir)
	cfg.Synapse.MaxAttempts = 2
	cfg.ItemAttempts = 1
	cfg.MaxFailures = 3
	s, err := Run(t.Context(), cfg)
	if err == nil || s == nil || s.Complete {
		t.Fatalf("export against a failing Synapse: %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "HTTP 500") || !strings.Contains(msg, "/_") || !(strings.Contains(msg, "user @") || strings.Contains(msg, "room !")) {
		t.Errorf("error does not name what failed: %s", msg)
	}
	if s.Failed == 0 || len(s.FailedItems) == 0 {
		t.Errorf("summary lists no failed items: %+v", s.Progress)
	}
	checkPartial(t, dir, want, false)

	rule.Remove()
	runExport(t, exportConfig(sim, dir))
	compareExports(t, readDir(t, dir), want)
}

// TestCorruptedStateNeverWritten has every /state answer corrupted: rooms with federated state
// fail with an error saying so, and no room file is written from a corrupted answer.
func TestCorruptedStateNeverWritten(t *testing.T) {
	w := testWorld(t, smallWorld)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	sim.Faults().Add(synapsesim.Fault{Endpoint: "fed.state", Kind: synapsesim.FaultTamper})
	dir := filepath.Join(t.TempDir(), "out")
	cfg := exportConfig(sim, dir)
	cfg.ItemAttempts = 2
	cfg.MaxFailures = 100
	s, err := Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "content hash mismatch") {
		t.Fatalf("export with corrupted state: %v", err)
	}
	federated := 0
	for _, r := range w.Rooms {
		if r.LocalJoinedNow() {
			federated++
		}
	}
	if s.Failed != federated || s.RoomsDone != len(w.Rooms)-federated || s.UsersDone != len(w.Users) {
		t.Errorf("%d rooms failed, %d done; want %d failed", s.Failed, s.RoomsDone, federated)
	}
	for p := range readDir(t, dir) {
		if strings.HasPrefix(p, "rooms/") {
			id := ""
			for _, r := range w.Rooms {
				if "rooms/"+exportfmt.Encode(r.ID)+".json" == p {
					id = r.ID
				}
			}
			if r := w.Room(id); r == nil || r.LocalJoinedNow() {
				t.Errorf("%s written from a corrupted answer", p)
			}
		}
	}
	if errors.Is(err, ErrDiskFull) {
		t.Error("corruption reported as a full disk")
	}
}
