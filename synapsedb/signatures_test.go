package synapsedb_test

import (
	"reflect"
	"testing"

	"github.com/transition-matrix/transition-matrix/synapsedb"
	"github.com/transition-matrix/transition-matrix/synapsedb/synapsedbtest"
)

// TestSignaturesByOthers: bob's signature on alice's master key is returned for alice; alice's
// own signatures and those of deactivated users are not.
func TestSignaturesByOthers(t *testing.T) {
	w := sharedWorld(t)
	path := synapsedbtest.WriteSQLite(t, w)
	raw := synapsedbtest.OpenSQLite(t, path)
	ctx := ctxT(t)
	for _, q := range []string{
		`INSERT INTO users (name, deactivated) VALUES ('@sigbob:hs.test', 0), ('@sigalice:hs.test', 0), ('@siggone:hs.test', 1)`,
		`INSERT INTO e2e_cross_signing_signatures VALUES
			('@sigbob:hs.test', 'ed25519:BOBUSK', '@sigalice:hs.test', 'ALICEMASTER', 'sig-by-bob'),
			('@sigalice:hs.test', 'ed25519:ALICESSK', '@sigalice:hs.test', 'ALICEDEVICE', 'own-sig'),
			('@siggone:hs.test', 'ed25519:GONEUSK', '@sigalice:hs.test', 'ALICEMASTER', 'sig-by-gone'),
			('@sigalice:hs.test', 'ed25519:ALICEUSK', '@sigbob:hs.test', 'BOBMASTER', 'sig-by-alice')`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	db := open(t, "file:"+path)
	got, err := db.SignaturesByOthers(ctx, "@sigalice:hs.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []synapsedb.CrossSigningSignature{{Signer: "@sigbob:hs.test", KeyID: "ed25519:BOBUSK", Target: "ALICEMASTER", Signature: "sig-by-bob"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SignaturesByOthers(alice) = %+v, want %+v", got, want)
	}
}
