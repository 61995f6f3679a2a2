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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	syn := synapsetest.Start(t, synapsetest.Options{})
	alice, bob := accounts(ctx, t, syn)
	s := Before(ctx, t, syn.BaseURL, alice, bob)
	if len(s.BeforeCutover) != 3 || s.RecoveryKey == "" {
		t.Fatalf("before: %d messages, recovery key %t; want 3 and a key", len(s.BeforeCutover), s.RecoveryKey != "")
	}
	s.Pause(ctx)
	if err := syn.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.After(ctx, syn.BaseURL); err != nil {
		t.Fatal(err)
	}
}
