package synapseclient_test

import (
	"context"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/signing"
)

// TestSimQueryServerKeys asks the simulated Synapse, as a notary, for the remote server's keys:
// the document is signed by the remote server and countersigned by Synapse; an unknown server
// gets an empty list.
func TestSimQueryServerKeys(t *testing.T) {
	r := startRig(t, synapsesim.Options{}, nil)
	ctx := context.Background()
	docs, err := r.c.Federation().QueryServerKeys(ctx, r.w.RemoteServerName)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || docs[0].ServerName != r.w.RemoteServerName {
		t.Fatalf("docs = %+v", docs)
	}
	rk := r.w.RemoteKey
	if got := docs[0].VerifyKeys[signing.KeyID(rk.KeyID)].Key; got == "" {
		t.Fatalf("remote key %s not in %s", rk.KeyID, docs[0].Raw)
	}
	if err := signing.VerifyJSON(rk.ServerName, signing.KeyID(rk.KeyID), rk.Public, docs[0].Raw); err != nil {
		t.Fatalf("remote self-signature: %v", err)
	}
	own := r.s.Identity().SigningKey()
	if err := signing.VerifyJSON(r.w.ServerName, own.ID, own.PublicKey(), docs[0].Raw); err != nil {
		t.Fatalf("notary countersignature: %v", err)
	}
	none, err := r.c.Federation().QueryServerKeys(ctx, "unknown.example")
	if err != nil || len(none) != 0 {
		t.Fatalf("unknown server: %v %v", none, err)
	}
}
