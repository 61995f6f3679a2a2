package conduitsim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
	"github.com/transition-matrix/transition-matrix/cutover"
	"github.com/transition-matrix/transition-matrix/signing"
)

// importedDB writes one account the way the import does and opens the database read-only.
func importedDB(t *testing.T, server, alice string) *conduit.DB {
	t.Helper()
	dir := conduittest.FreshDB(t, server, 18)
	db, err := conduit.Open(dir, conduit.Options{ServerName: server})
	if err != nil {
		t.Fatal(err)
	}
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	_, err = db.Update(func(tx *conduit.Tx) error {
		return errors.Join(
			tx.PutUser(conduit.User{ID: alice, PasswordHash: "$2b$04$x", DisplayName: "Alice", AvatarURL: "mxc://" + server + "/a"}),
			tx.PutDevice(alice, conduit.Device{ID: "AAA", DisplayName: "phone", LastSeenTS: 5}),
			tx.PutDevice(alice, conduit.Device{ID: "BBB"}),
			tx.PutDeviceKeys(alice, "AAA", raw(`{"user_id":"`+alice+`","device_id":"AAA","algorithms":["m.olm.v1.curve25519-aes-sha2"],"keys":{"ed25519:AAA":"k"},"signatures":{}}`)),
			tx.PutCrossSigningKey(alice, "master", raw(`{"user_id":"`+alice+`","usage":["master"],"keys":{"ed25519:bWFzdGVy":"bWFzdGVy"}}`)),
			tx.PutCrossSigningKey(alice, "user_signing", raw(`{"user_id":"`+alice+`","usage":["user_signing"],"keys":{"ed25519:dXNlcg":"dXNlcg"}}`)),
			tx.PutAccountData("", alice, "m.direct", raw(`{"@bob:`+server+`":["!d:`+server+`"]}`)),
			tx.PutAccountData("!r:"+server, alice, "m.tag", raw(`{"tags":{"m.favourite":{}}}`)),
			tx.PutBackupVersion(alice, "1", raw(`{"algorithm":"m.megolm_backup.v1.curve25519-aes-sha2","auth_data":{"public_key":"pk"}}`)),
			tx.PutBackupSession(alice, "1", "!r:"+server, "s1", raw(`{"first_message_index":0,"forwarded_count":0,"is_verified":true,"session_data":{}}`)),
			tx.PutBackupSession(alice, "1", "!r:"+server, "s2", raw(`{"first_message_index":1,"forwarded_count":0,"is_verified":true,"session_data":{}}`)),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := conduit.Open(dir, conduit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	return ro
}

func TestUserEndpointsServeTheDatabase(t *testing.T) {
	const server = "example.org"
	alice, bob := "@alice:"+server, "@bob:"+server
	db := importedDB(t, server, alice)
	id := &signing.Identity{ServerName: server, Keys: []signing.Key{{ID: "ed25519:a", Seed: make([]byte, 32)}}}
	sim := Start(t, Options{Identity: id, ShimURL: "http://127.0.0.1:1", ASToken: asToken, Users: []string{alice, bob}, UserData: db})
	tg := &cutover.Client{BaseURL: sim.URL, Token: asToken, Attempts: 1}
	ctx := context.Background()

	p, err := tg.Profile(ctx, alice)
	if err != nil || string(p) != `{"avatar_url":"mxc://example.org/a","displayname":"Alice"}` {
		t.Errorf("profile %s %v", p, err)
	}
	if _, err := tg.Profile(ctx, "@nobody:"+server); !errors.Is(err, cutover.ErrNotFound) {
		t.Errorf("profile of nobody: %v", err)
	}
	devs, err := tg.Devices(ctx, alice)
	if err != nil || len(devs) != 2 || devs[0].DeviceID != "AAA" || *devs[0].DisplayName != "phone" || devs[1].DisplayName != nil {
		t.Errorf("devices %+v %v", devs, err)
	}
	if d, err := tg.AccountData(ctx, alice, "", "m.direct"); err != nil || !strings.Contains(string(d), `"!d:example.org"`) {
		t.Errorf("m.direct %s %v", d, err)
	}
	if d, err := tg.AccountData(ctx, alice, "!r:"+server, "m.tag"); err != nil || string(d) != `{"tags":{"m.favourite":{}}}` {
		t.Errorf("m.tag %s %v", d, err)
	}
	if _, err := tg.AccountData(ctx, alice, "", "m.ignored_user_list"); !errors.Is(err, cutover.ErrNotFound) {
		t.Errorf("absent account data: %v", err)
	}
	k, err := tg.QueryKeys(ctx, alice)
	if err != nil || len(k.DeviceKeys) != 1 || k.MasterKey == nil || k.UserSigningKey == nil || k.SelfSigningKey != nil {
		t.Fatalf("own keys %+v %v", k, err)
	}
	if !strings.Contains(string(k.DeviceKeys["AAA"]), `"unsigned":{"device_display_name":"phone"}`) {
		t.Errorf("device keys without Conduit's unsigned display name: %s", k.DeviceKeys["AAA"])
	}
	b, err := tg.KeyBackup(ctx, alice)
	if err != nil || b == nil || b.Version != "1" || b.Count != 2 || b.Algorithm != "m.megolm_backup.v1.curve25519-aes-sha2" || string(b.AuthData) != `{"public_key":"pk"}` {
		t.Errorf("backup %+v %v", b, err)
	}
	if b, err := tg.KeyBackup(ctx, bob); b != nil || err != nil {
		t.Errorf("bob has no backup: %+v %v", b, err)
	}

	// Another user sees alice's master key but not her user-signing key, nor her account data.
	req, _ := http.NewRequest("POST", sim.URL+"/_matrix/client/v3/keys/query?user_id="+bob, strings.NewReader(`{"device_keys":{"`+alice+`":[]}}`))
	req.Header.Set("Authorization", "Bearer "+asToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]map[string]json.RawMessage
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || out["master_keys"][alice] == nil || out["user_signing_keys"][alice] != nil {
		t.Errorf("keys of alice asked by bob: %v %v", out, err)
	}
	req, _ = http.NewRequest("GET", sim.URL+"/_matrix/client/v3/user/"+alice+"/account_data/m.direct?user_id="+bob, nil)
	req.Header.Set("Authorization", "Bearer "+asToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob reading alice's account data: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
}
