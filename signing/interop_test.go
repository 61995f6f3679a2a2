package signing

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

func randomKey(t testing.TB, id KeyID) Key {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Seed: seed}
}

// staticVerifier is a gomatrixserverlib JSONVerifier that knows fixed keys.
type staticVerifier map[string]map[gmsl.KeyID]ed25519.PublicKey

func (v staticVerifier) VerifyJSONs(_ context.Context, reqs []gmsl.VerifyJSONRequest) ([]gmsl.VerifyJSONResult, error) {
	out := make([]gmsl.VerifyJSONResult, len(reqs))
	for i, r := range reqs {
		ids, err := gmsl.ListKeyIDs(string(r.ServerName), r.Message)
		if err != nil {
			out[i].Error = err
			continue
		}
		out[i].Error = gmsl.VerifyJSON(string(r.ServerName), ids[0], v[string(r.ServerName)][ids[0]], r.Message)
	}
	return out, nil
}

func TestJSONSignaturesInteroperateWithGomatrixserverlib(t *testing.T) {
	k := randomKey(t, "ed25519:a_Test")
	objs := []string{
		`{}`,
		`{"b":[1,2,{"z":null,"a":true}],"a":"\u00e9\u2028 \"quoted\" \\ \t","n":-9007199254740991}`,
		`{"nested":{"signatures":"not ours"},"unsigned":{"age":5},"emoji":"😀","ctrl":"\u0001\u001f"}`,
	}
	for _, obj := range objs {
		ours, err := SignJSON("example.org", k, []byte(obj))
		if err != nil {
			t.Fatal(err)
		}
		if err := gmsl.VerifyJSON("example.org", gmsl.KeyID(k.ID), k.PublicKey(), ours); err != nil {
			t.Errorf("gomatrixserverlib rejects our signature on %s: %v", obj, err)
		}
		theirs, err := gmsl.SignJSON("example.org", gmsl.KeyID(k.ID), k.PrivateKey(), []byte(obj))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyJSON("example.org", k.ID, k.PublicKey(), theirs); err != nil {
			t.Errorf("we reject gomatrixserverlib's signature on %s: %v", obj, err)
		}
		gc, err := gmsl.CanonicalJSON([]byte(obj))
		if err != nil {
			t.Fatal(err)
		}
		oc, err := CanonicalJSON([]byte(obj))
		if err != nil {
			t.Fatal(err)
		}
		if string(gc) != string(oc) {
			t.Errorf("canonical JSON differs:\n gmsl %s\n ours %s", gc, oc)
		}
	}
}

func TestEventsInteroperateWithGomatrixserverlib(t *testing.T) {
	k := randomKey(t, "ed25519:a_Evnt")
	verifier := staticVerifier{"example.org": {gmsl.KeyID(k.ID): k.PublicKey()}}
	uid := func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
	for _, ver := range []gmsl.RoomVersion{gmsl.RoomVersionV1, gmsl.RoomVersionV6, gmsl.RoomVersionV10, gmsl.RoomVersionV11} {
		impl := gmsl.MustGetRoomVersion(ver)
		eb := impl.NewEventBuilderFromProtoEvent(&gmsl.ProtoEvent{SenderID: "@alice:example.org", RoomID: "!r:example.org",
			Type: spec.MRoomCreate, StateKey: new(string), Depth: 1})
		if err := eb.SetContent(map[string]any{"creator": "@alice:example.org", "room_version": string(ver)}); err != nil {
			t.Fatal(err)
		}
		ev, err := eb.Build(time.UnixMilli(1700000000000), "example.org", gmsl.KeyID(k.ID), k.PrivateKey())
		if err != nil {
			t.Fatal(err)
		}
		// gomatrixserverlib built and signed it: we must verify it and compute the same ID.
		if err := VerifyEventSignature(string(ver), "example.org", k.ID, k.PublicKey(), ev.JSON()); err != nil {
			t.Errorf("v%s: our check of gmsl's event: %v", ver, err)
		}
		if id, err := EventID(string(ver), ev.JSON()); err != nil || id != ev.EventID() {
			t.Errorf("v%s: event ID %s (%v), gmsl says %s", ver, id, err, ev.EventID())
		}
		// We re-sign it: gomatrixserverlib must accept our hash and signature.
		var m map[string]any
		_ = json.Unmarshal(ev.JSON(), &m)
		delete(m, "signatures")
		delete(m, "hashes")
		raw, _ := json.Marshal(m)
		ours, err := SignEvent(string(ver), "example.org", k, raw)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := impl.NewEventFromUntrustedJSON(ours)
		if err != nil {
			t.Fatalf("v%s: gmsl cannot parse our event: %v", ver, err)
		}
		if parsed.Redacted() {
			t.Errorf("v%s: gmsl found our content hash wrong", ver)
		}
		if err := gmsl.VerifyEventSignatures(context.Background(), parsed, verifier, uid); err != nil {
			t.Errorf("v%s: gmsl rejects our event signature: %v", ver, err)
		}
	}
}

func TestXMatrixInteroperatesWithGomatrixserverlib(t *testing.T) {
	k := randomKey(t, "ed25519:a_Xmtx")
	id := &Identity{ServerName: "example.org", Keys: []Key{k}}
	verifier := staticVerifier{"example.org": {gmsl.KeyID(k.ID): k.PublicKey()}}

	// gomatrixserverlib signs; we verify.
	fr := fclient.NewFederationRequest("POST", "example.org", "example.org", "/_matrix/federation/v1/get_missing_events/%21r%3Aexample.org?x=1")
	if err := fr.SetContent(map[string]any{"limit": 10, "earliest_events": []string{"$a"}}); err != nil {
		t.Fatal(err)
	}
	if err := fr.Sign("example.org", gmsl.KeyID(k.ID), k.PrivateKey()); err != nil {
		t.Fatal(err)
	}
	hreq, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	hreq.RequestURI = fr.RequestURI()
	origin, err := VerifyHTTPRequest(hreq, "example.org", id.Lookup(), 1<<20)
	if err != nil || origin != "example.org" {
		t.Fatalf("our check of gmsl's request: origin %q, %v", origin, err)
	}

	// We sign; gomatrixserverlib verifies.
	uri := "/_matrix/federation/v1/backfill/%21r%3Aexample.org?v=%24abc&limit=100"
	x, err := SignRequest(id, "GET", "example.org", uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", uri, nil)
	req.Header.Set("Authorization", x.String())
	if got, jr := fclient.VerifyHTTPRequest(req, time.Now(), "example.org", nil, verifier); got == nil {
		t.Fatalf("gmsl rejects our request signature: %d %v", jr.Code, jr.JSON)
	}
}

func TestKeyDocumentAcceptedByGomatrixserverlib(t *testing.T) {
	k1, k2 := randomKey(t, "ed25519:a_One"), randomKey(t, "ed25519:a_Two")
	old := randomKey(t, "ed25519:a_Old")
	id := &Identity{ServerName: "example.org", Keys: []Key{k1, k2},
		OldKeys: []OldKey{{ID: old.ID, Public: old.PublicKey(), ExpiredTS: 1600000000000}}}
	now := time.Now()
	doc, err := id.KeyDocument(now.Add(DefaultKeyValidity))
	if err != nil {
		t.Fatal(err)
	}
	var keys gmsl.ServerKeys
	if err := json.Unmarshal(doc, &keys); err != nil {
		t.Fatal(err)
	}
	checks, ed25519Keys := gmsl.CheckKeys("example.org", now, keys)
	if !checks.AllChecksOK {
		t.Fatalf("gmsl key checks failed: %+v", checks)
	}
	if len(ed25519Keys) != 2 {
		t.Fatalf("gmsl found %d verify keys, want 2", len(ed25519Keys))
	}
	for _, k := range id.Keys {
		if err := VerifyJSON("example.org", k.ID, k.PublicKey(), doc); err != nil {
			t.Errorf("document not signed by %s: %v", k.ID, err)
		}
	}
	if keys.OldVerifyKeys[gmsl.KeyID(old.ID)].ExpiredTS != 1600000000000 {
		t.Errorf("old key not published with its expiry: %+v", keys.OldVerifyKeys)
	}
}

func TestConduitKeyForms(t *testing.T) {
	k := randomKey(t, "ed25519:a_Cndt")
	kp := k.ConduitKeypair()
	version, der, ok := strings.Cut(string(kp), "\xff")
	if !ok || version != "a_Cndt" {
		t.Fatalf("keypair value = %q...", kp[:10])
	}
	parsed, err := x509.ParsePKCS8PrivateKey([]byte(der))
	if err != nil {
		t.Fatalf("DER does not parse as PKCS#8: %v", err)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok || !priv.Equal(k.PrivateKey()) {
		t.Fatal("DER holds a different key")
	}
	// The standard library's own PKCS#8 encoding of the same key must be byte-identical (v1 form).
	std, err := x509.MarshalPKCS8PrivateKey(k.PrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	if string(std) != der {
		t.Fatal("PKCS#8 DER differs from the standard library's")
	}

	old := randomKey(t, "ed25519:a_Old")
	id := &Identity{ServerName: "example.org", Keys: []Key{k}, OldKeys: []OldKey{{ID: old.ID, Public: old.PublicKey(), ExpiredTS: 42}}}
	raw, err := id.ConduitServerSigningKeys(time.UnixMilli(5000))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"old_verify_keys":{"ed25519:a_Old":{"expired_ts":42,"key":"` + EncodeBase64(old.PublicKey()) +
		`"}},"server_name":"example.org","signatures":{},"valid_until_ts":5000,"verify_keys":{"ed25519:a_Cndt":{"key":"` + EncodeBase64(k.PublicKey()) + `"}}}`
	if string(raw) != want {
		t.Fatalf("server_signingkeys\n got %s\nwant %s", raw, want)
	}
}
