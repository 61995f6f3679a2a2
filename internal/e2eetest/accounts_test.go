//go:build synapse || conduit

package e2eetest

import (
	"context"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
)

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
