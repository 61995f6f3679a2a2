//go:build conduit

package e2eetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/realconduit"
	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
)

// cutover runs the scenario's first half on a real Synapse, stops the clients, migrates into a
// real Conduit as an admin does (afterExport edits the export before the import), shuts Synapse
// and the shim down, and returns the scenario's second half run on Conduit.
func cutover(t *testing.T, afterExport func(s *Scenario, exportDir string) error, verifyMustPass bool) (*Scenario, *realconduit.Recorder, error) {
	bin := realconduit.Bin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	t.Cleanup(cancel)
	syn := synapsetest.Start(t, synapsetest.Options{})
	alice, bob := accounts(ctx, t, syn)
	s := Before(ctx, t, syn.BaseURL, alice, bob, roomVersion)
	s.Pause(ctx)

	m := realconduit.NewMigration(t, realconduit.SourceOf(syn), realconduit.Options{Bin: bin})
	m.Recorder = realconduit.NewRecorder() // between Conduit and the shim: what came through it
	t.Cleanup(func() { _ = m.Recorder.Close() })
	step := func(name string, f func(context.Context) error) {
		t.Helper()
		if err := f(ctx); err != nil {
			t.Fatalf("%s: %v\nConduit log:\n%s", name, err, m.Conduit.LogTail(40))
		}
	}
	step("first start", m.FirstStart)
	step("export", m.Export)
	if afterExport != nil {
		if err := afterExport(s, m.ExportDir); err != nil {
			t.Fatal(err)
		}
	}
	step("archive", m.Archive)
	step("import", m.Import)
	step("serve", m.Serve)
	step("start Conduit", m.StartTarget)
	step("rejoin", m.Rejoin)
	step("warm", m.Warm)
	if err := m.Verify(ctx); err != nil {
		if verifyMustPass {
			t.Fatalf("verify: %v", err)
		}
		t.Logf("shim verify: %v", err)
	} else if !verifyMustPass {
		t.Logf("shim verify passed")
	}
	if err := syn.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := m.StopServe(); err != nil {
		t.Fatal(err)
	}
	err := s.After(ctx, m.Conduit.URL)
	if err != nil {
		t.Logf("Conduit log:\n%s", m.Conduit.LogTail(40))
	}
	return s, m.Recorder, err
}

// notThroughShim returns the messages whose event no federation answer of the shim carried.
func notThroughShim(rec *realconduit.Recorder, msgs []Message) []Message {
	served := map[string]bool{}
	for _, r := range rec.Requests() {
		for _, id := range r.EventIDs {
			served[id] = true
		}
	}
	var out []Message
	for _, m := range msgs {
		if !served[m.EventID] {
			out = append(out, m)
		}
	}
	return out
}

// TestScenarioAcrossCutover: the same devices (tokens, crypto stores) go on on Conduit, bob still
// sees alice's device as verified, messages flow both ways, and a new device of alice restores
// the backup and reads what was said on Synapse, each of those events served to Conduit by the shim.
func TestScenarioAcrossCutover(t *testing.T) {
	s, rec, err := cutover(t, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if missed := notThroughShim(rec, s.BeforeCutover); len(missed) > 0 {
		t.Errorf("messages from before the cutover that no shim answer carried (so not backfilled from it): %+v", missed)
	}
	t.Logf("on Conduit: %d messages before, %d after the cutover, all decrypted", len(s.BeforeCutover), len(s.AfterCutover))
}

// TestScenarioFailsWithoutAliceDeviceKeys leaves alice's device keys out of the import (the
// export is edited between export and import): bob must stop seeing her device as verified.
func TestScenarioFailsWithoutAliceDeviceKeys(t *testing.T) {
	_, _, err := cutover(t, func(s *Scenario, dir string) error {
		return DropDeviceKeys(dir, s.Alice.UserID, AliceDeviceID)
	}, false)
	if err == nil {
		t.Fatal("the scenario passed with alice's device keys left out of the import")
	}
	if !errors.Is(err, ErrNotVerified) {
		t.Fatalf("want %v, got %v", ErrNotVerified, err)
	}
	t.Logf("as expected: %v", err)
}
