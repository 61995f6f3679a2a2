//go:build synapse || conduit

package e2eetest

import (
	"context"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
)

// roomVersion is the scenario room's version: 11, until the export handles v12 rooms (Synapse
// 1.163's default; their room ID is the create event's ID and the export refuses it today).
const roomVersion = "11"

// accounts registers alice and bob on syn with passwords.
func accounts(ctx context.Context, t *testing.T, syn *synapsetest.Server) (alice, bob Account) {
	t.Helper()
	for _, a := range []struct {
		into      *Account
		local, pw string
	}{{&alice, "alice", "alice-secret-pw"}, {&bob, "bob", "bob-secret-pw"}} {
		r, err := syn.Register(ctx, a.local, a.pw, false)
		if err != nil {
			t.Fatal(err)
		}
		*a.into = Account{UserID: r.UserID, Password: a.pw}
	}
	return alice, bob
}
