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
func cutover(t *testing.T, afterExport func(s *Scenario, exportDir string) error, verifyMustPass bool) (*Scenario, error) {
	bin := realconduit.Bin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	t.Cleanup(cancel)
	syn := synapsetest.Start(t, synapsetest.Options{})
	alice, bob := accounts(ctx, t, syn)
	s := Before(ctx, t, syn.BaseURL, alice, bob, roomVersion)
	s.Pause(ctx)

	m := realconduit.NewMigration(t, realconduit.SourceOf(syn), realconduit.Options{Bin: bin})
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
	return s, err
}

// TestScenarioAcrossCutover: the same devices (tokens, crypto stores) go on on Conduit, bob still
// sees alice's device as verified, messages flow both ways, and a new device of alice restores
// the backup and reads what was said on Synapse (backfilled through the shim).
func TestScenarioAcrossCutover(t *testing.T) {
	s, err := cutover(t, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("on Conduit: %d messages before, %d after the cutover, all decrypted", len(s.BeforeCutover), len(s.AfterCutover))
}

// TestScenarioFailsWithoutAliceDeviceKeys leaves alice's device keys out of the import (the
// export is edited between export and import): bob must stop seeing her device as verified.
func TestScenarioFailsWithoutAliceDeviceKeys(t *testing.T) {
	_, err := cutover(t, func(s *Scenario, dir string) error {
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
