package signing

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/fixtures"
)

const fixtureServer = "synapse.test"

// fixtureKey is the public key Synapse published in key_v2_server.json.
func fixtureKey(t *testing.T) (KeyID, ed25519.PublicKey) {
	t.Helper()
	rec := fixtures.Load(t, "key_v2_server")
	var doc struct {
		VerifyKeys map[KeyID]struct{ Key string } `json:"verify_keys"`
	}
	if err := json.Unmarshal(rec.Response.Body, &doc); err != nil {
		t.Fatal(err)
	}
	for id, k := range doc.VerifyKeys {
		pub, err := DecodeBase64(k.Key)
		if err != nil {
			t.Fatal(err)
		}
		return id, pub
	}
	t.Fatal("key_v2_server.json has no verify key")
	return "", nil
}

// roomVersions maps the fixture rooms to their versions, read from the admin room details.
func roomVersions(t *testing.T, recs []*fixtures.Recording) map[string]string {
	out := map[string]string{}
	for _, r := range recs {
		if !strings.HasPrefix(r.Name, "admin_v1_room_") || r.Response.Status != 200 {
			continue
		}
		var room struct {
			RoomID  string `json:"room_id"`
			Version string `json:"version"`
		}
		if json.Unmarshal(r.Response.Body, &room) == nil && room.RoomID != "" && room.Version != "" {
			out[room.RoomID] = room.Version
		}
	}
	if len(out) < 5 {
		t.Fatalf("found versions for %d rooms, want 5", len(out))
	}
	return out
}

// walkObjects calls fn for every JSON object inside v, depth first.
func walkObjects(v any, fn func(map[string]any)) {
	switch t := v.(type) {
	case map[string]any:
		fn(t)
		for _, e := range t {
			walkObjects(e, fn)
		}
	case []any:
		for _, e := range t {
			walkObjects(e, fn)
		}
	}
}

// TestFixtureSignaturesVerify checks every signed object Synapse produced in the recordings: PDUs
// (signature over the redacted form, content hash, event ID), the key document, device keys.
func TestFixtureSignaturesVerify(t *testing.T) {
	recs := fixtures.LoadAll(t)
	keyID, pub := fixtureKey(t)
	versions := roomVersions(t, recs)
	counts := map[string]int{}
	devices := deviceKeys(recs)
	for _, rec := range recs {
		var body any
		if err := json.Unmarshal(rec.Response.Body, &body); err != nil {
			continue
		}
		walkObjects(body, func(obj map[string]any) {
			sigs, _ := obj["signatures"].(map[string]any)
			if sigs == nil {
				return
			}
			raw, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			where := rec.Name
			switch {
			case obj["hashes"] != nil && obj["type"] != nil:
				roomID, _ := obj["room_id"].(string)
				ver, ok := versions[roomID]
				if !ok {
					t.Errorf("%s: PDU in unknown room %q", where, roomID)
					return
				}
				if err := VerifyEventSignature(ver, fixtureServer, keyID, pub, raw); err != nil {
					t.Errorf("%s: PDU %s: %v", where, obj["type"], err)
					return
				}
				hash, _ := ContentHash(raw)
				want, _ := obj["hashes"].(map[string]any)["sha256"].(string)
				unsigned, _ := obj["unsigned"].(map[string]any)
				switch {
				case hash == want:
					counts["pdu"]++
				case unsigned["redacted_by"] != nil || unsigned["redacted_because"] != nil:
					counts["pdu (served redacted: hash differs, as expected)"]++
				default:
					t.Errorf("%s: PDU %s: content hash %s, event says %s", where, obj["type"], hash, want)
				}
				if _, err := EventID(ver, raw); err != nil {
					t.Errorf("%s: event ID: %v", where, err)
				}
			case obj["verify_keys"] != nil:
				if err := VerifyJSON(fixtureServer, keyID, pub, raw); err != nil {
					t.Errorf("%s: key document: %v", where, err)
					return
				}
				counts["key document"]++
			case obj["device_id"] != nil && obj["keys"] != nil:
				user, _ := obj["user_id"].(string)
				dev, _ := obj["device_id"].(string)
				devKey, _ := obj["keys"].(map[string]any)["ed25519:"+dev].(string)
				devPub, err := DecodeBase64(devKey)
				if err != nil {
					t.Errorf("%s: device %s has no ed25519 key", where, dev)
					return
				}
				if err := VerifyJSON(user, KeyID("ed25519:"+dev), devPub, raw); err != nil {
					t.Errorf("%s: device keys of %s: %v", where, dev, err)
					return
				}
				counts["device keys"]++
			default:
				// Objects a device signed, such as key-backup auth_data.
				n := 0
				for signer, byKey := range sigs {
					for id := range byKey.(map[string]any) {
						devPub, ok := devices[signer+" "+id]
						if !ok {
							continue
						}
						if err := VerifyJSON(signer, KeyID(id), devPub, raw); err != nil {
							t.Errorf("%s: object signed by %s %s: %v", where, signer, id, err)
						}
						n++
					}
				}
				if n == 0 {
					t.Errorf("%s: signed object with no known signer: %s", where, raw)
				}
				counts["signed by a device"]++
			}
		})
	}
	t.Logf("verified: %v", counts)
	if counts["pdu"] < 100 || counts["key document"] < 1 || counts["device keys"] < 1 || counts["signed by a device"] < 1 {
		t.Fatalf("too few signed objects verified: %v", counts)
	}
}

// deviceKeys collects the devices' ed25519 keys, keyed by "<user> ed25519:<device>".
func deviceKeys(recs []*fixtures.Recording) map[string]ed25519.PublicKey {
	out := map[string]ed25519.PublicKey{}
	for _, rec := range recs {
		var body any
		if json.Unmarshal(rec.Response.Body, &body) != nil {
			continue
		}
		walkObjects(body, func(obj map[string]any) {
			user, _ := obj["user_id"].(string)
			dev, _ := obj["device_id"].(string)
			keys, _ := obj["keys"].(map[string]any)
			if b64, ok := keys["ed25519:"+dev].(string); ok && user != "" {
				if pub, err := DecodeBase64(b64); err == nil {
					out[user+" ed25519:"+dev] = pub
				}
			}
		})
	}
	return out
}

// TestFixtureEventIDs checks that the reference hash of a PDU fetched by ID is that ID.
func TestFixtureEventIDs(t *testing.T) {
	recs := fixtures.LoadAll(t)
	versions := roomVersions(t, recs)
	checked := 0
	for _, rec := range recs {
		if !strings.HasPrefix(rec.Name, "fed_event_") || strings.HasPrefix(rec.Name, "fed_event_auth") || rec.Response.Status != 200 {
			continue
		}
		var txn struct{ PDUs []json.RawMessage }
		if err := json.Unmarshal(rec.Response.Body, &txn); err != nil || len(txn.PDUs) != 1 {
			t.Fatalf("%s: want one PDU", rec.Name)
		}
		var meta struct {
			RoomID string `json:"room_id"`
		}
		_ = json.Unmarshal(txn.PDUs[0], &meta)
		id, err := EventID(versions[meta.RoomID], txn.PDUs[0])
		if err != nil {
			t.Fatal(err)
		}
		wantEscaped := rec.Request.Path[strings.LastIndex(rec.Request.Path, "/")+1:]
		want := strings.NewReplacer("%24", "$", "%3A", ":").Replace(wantEscaped)
		if id != want {
			t.Errorf("%s: computed event ID %s, requested %s", rec.Name, id, want)
		}
		checked++
	}
	if checked < 4 {
		t.Fatalf("checked %d /event recordings, want at least 4", checked)
	}
}

// TestFixtureXMatrixRequests verifies the X-Matrix headers recorded on the federation requests, and
// expects the failures Synapse reported for the hostile ones.
func TestFixtureXMatrixRequests(t *testing.T) {
	keyID, pub := fixtureKey(t)
	lookup := func(origin string, id KeyID) (ed25519.PublicKey, error) {
		if origin == fixtureServer && id == keyID {
			return pub, nil
		}
		return nil, fmt.Errorf("%w: %s %s", ErrUnknownKey, origin, id)
	}
	wantErr := map[string]error{
		"fed_bad_signature":                    ErrBadSignature,
		"fed_destination_mismatch_header":      ErrWrongDestination,
		"fed_destination_mismatch_signed_only": ErrBadSignature,
		"fed_unknown_origin":                   ErrUnknownKey,
		"fed_no_auth":                          ErrNoAuthorization,
	}
	checked := 0
	for _, rec := range fixtures.LoadAll(t) {
		if !strings.HasPrefix(rec.Name, "fed_") || rec.Name == "fed_version" {
			continue
		}
		var content []byte
		if len(rec.Request.Body) > 0 && string(rec.Request.Body) != "null" {
			content = rec.Request.Body
		}
		var auth []string
		if h := rec.XMatrix(); h != "" {
			auth = []string{h}
		}
		_, err := VerifyRequest(Request{Method: rec.Request.Method, URI: rec.Request.Path, Content: content, Authorization: auth}, fixtureServer, lookup)
		want := wantErr[rec.Name]
		switch {
		case want == nil && err != nil:
			t.Errorf("%s: %v", rec.Name, err)
		case want != nil && !errors.Is(err, want):
			t.Errorf("%s: err = %v, want %v", rec.Name, err, want)
		case want == nil && rec.Response.Status == 401:
			t.Errorf("%s: Synapse refused it (401) but it verified here", rec.Name)
		}
		checked++
	}
	if checked < 30 {
		t.Fatalf("checked %d federation recordings, want at least 30", checked)
	}
}
