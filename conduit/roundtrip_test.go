package conduit_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
)

const server = "example.org"

func freshDir(tb testing.TB) string { return conduittest.FreshDB(tb, server, 18) }

func openFresh(t *testing.T, version int) (*conduit.DB, string) {
	t.Helper()
	dir := conduittest.FreshDB(t, server, version)
	db, err := conduit.Open(dir, conduit.Options{ServerName: server})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dir
}

// importAlice writes one user with everything the importer carries.
func importAlice(tx *conduit.Tx) error {
	const alice = "@alice:example.org"
	steps := []func() error{
		func() error {
			return tx.PutUser(conduit.User{ID: alice, PasswordHash: "$2b$12$abcdefghijklmnopqrstuv", DisplayName: "Alice", AvatarURL: "mxc://example.org/avatar"})
		},
		func() error {
			return tx.PutDevice(alice, conduit.Device{ID: "DEV1", DisplayName: "phone", LastSeenIP: "10.0.0.1", LastSeenTS: 1700000000000})
		},
		func() error { return tx.PutAccessToken(alice, "DEV1", "syt_token_1") },
		func() error {
			return tx.PutDeviceKeys(alice, "DEV1", json.RawMessage(`{"user_id":"@alice:example.org","device_id":"DEV1","algorithms":["m.olm.v1.curve25519-aes-sha2"],"keys":{"ed25519:DEV1":"k"}}`))
		},
		func() error {
			return tx.PutCrossSigningKey(alice, "master", json.RawMessage(`{"user_id":"@alice:example.org","usage":["master"],"keys":{"ed25519:MPUB":"MPUB"}}`))
		},
		func() error {
			return tx.PutAccountData("", alice, "m.push_rules", json.RawMessage(`{"global":{"override":[]}}`))
		},
		func() error {
			return tx.PutAccountData("!room:example.org", alice, "m.tag", json.RawMessage(`{"tags":{"u.work":{}}}`))
		},
		func() error {
			return tx.PutPusher(alice, json.RawMessage(`{"pushkey":"pk","kind":"http","app_id":"im.app","app_display_name":"App","device_display_name":"phone","lang":"en","data":{"url":"https://push.example/_matrix/push/v1/notify"}}`))
		},
		func() error {
			return tx.PutBackupVersion(alice, "1", json.RawMessage(`{"algorithm":"m.megolm_backup.v1.curve25519-aes-sha2","auth_data":{"public_key":"pk"}}`))
		},
		func() error {
			return tx.PutBackupSession(alice, "1", "!room:example.org", "sess1", json.RawMessage(`{"first_message_index":0,"forwarded_count":0,"is_verified":true,"session_data":{"ciphertext":"c"}}`))
		},
		func() error {
			return tx.PutOneTimeKey(alice, "DEV1", "signed_curve25519:AAAAHg", json.RawMessage(`{"key":"otk"}`))
		},
		func() error {
			return tx.PutMediaBytes(conduit.Media{Server: server, MediaID: "avatar", Uploader: alice, ContentType: "image/png", Filename: "a.png", CreatedTS: 1700000000000}, []byte("png bytes"))
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

func TestRoundTripAndIdempotency(t *testing.T) {
	for _, version := range []int{16, 17, 18} {
		t.Run(string(rune('0'+version/10))+string(rune('0'+version%10)), func(t *testing.T) {
			db, _ := openFresh(t, version)
			c0, _ := db.Counter()
			ch, err := db.Update(importAlice)
			if err != nil {
				t.Fatal(err)
			}
			if ch.Written == 0 || ch.Files != 1 {
				t.Fatalf("first import: %+v", ch)
			}
			c1, _ := db.Counter()
			if c1 <= c0 {
				t.Fatalf("counter %d → %d, want raised", c0, c1)
			}
			ch, err = db.Update(importAlice)
			if err != nil {
				t.Fatal(err)
			}
			if ch.Total() != 0 {
				t.Fatalf("second import changed %+v", ch)
			}
			if c2, _ := db.Counter(); c2 != c1 {
				t.Fatalf("second import moved the counter %d → %d", c1, c2)
			}
			u, ok, err := db.User("@alice:example.org")
			if err != nil || !ok || u.DisplayName != "Alice" || u.PasswordHash != "$2b$12$abcdefghijklmnopqrstuv" {
				t.Fatalf("user %+v %v %v", u, ok, err)
			}
			toks, err := db.AccessTokens("@alice:example.org")
			if err != nil || toks["DEV1"] != "syt_token_1" {
				t.Fatalf("tokens %v %v", toks, err)
			}
			mf, ok, err := db.Media(server, "avatar")
			if err != nil || !ok || !bytes.Equal(mf.Content, []byte("png bytes")) || mf.Filename != "a.png" || mf.ContentType != "image/png" {
				t.Fatalf("media %+v %v %v", mf, ok, err)
			}
		})
	}
}
