//go:build synapse

package e2eetest

import (
	"context"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
)

// TestScenarioOnSynapse runs the whole scenario with Synapse on both sides of a restart: the
// reference for the Conduit run (what passes here and fails there is Conduit's or the import's).
func TestScenarioOnSynapse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	syn := synapsetest.Start(t, synapsetest.Options{})
	alice, bob := accounts(ctx, t, syn)
	s := Before(ctx, t, syn.BaseURL, alice, bob, roomVersion)
	if len(s.BeforeCutover) != 3 || s.RecoveryKey == "" {
		t.Fatalf("before: %d messages, recovery key %t; want 3 and a key", len(s.BeforeCutover), s.RecoveryKey != "")
	}
	s.Pause(ctx)

	// Offline, what the import writes into a Conduit database: alice's device keys, and her
	// master key with bob's signature from his verification (Synapse shows it to bob only).
	devices, master := importedKeys(ctx, t, syn, s, nil)
	if _, ok := devices[AliceDeviceID]; !ok {
		t.Errorf("Conduit's database has alice's device keys for %d devices, not %s", len(devices), AliceDeviceID)
	}
	if by := signers(t, master); !by[s.Alice.UserID] || !by[s.Bob.UserID] {
		t.Errorf("alice's master key in Conduit's database is signed by %v, want alice and bob", by)
	}
	// The test hook of the Conduit run: with alice's device keys dropped from the export, the
	// import writes none for that device.
	devices, _ = importedKeys(ctx, t, syn, s, func(dir string) error { return DropDeviceKeys(dir, s.Alice.UserID, AliceDeviceID) })
	if _, ok := devices[AliceDeviceID]; ok {
		t.Errorf("alice's device keys were imported though DropDeviceKeys took them out of the export")
	}

	if err := syn.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.After(ctx, syn.BaseURL); err != nil {
		t.Fatal(err)
	}
}
