package conduit_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/signing"
)

// Layout tests: one per tree the writer fills, each naming the Conduit source it follows (paths
// in timokoesters/conduit next d058dab7 unless a tag is named; research/conduit-facts.md §3 and
// research/conduit-join-and-spec-vectors.md §1–2) and asserting the exact key and value bytes.

const alice = "@alice:example.org"

// freshCount is global["c"] of conduittest's fresh database: 22 counts for the admin room.
const freshCount = 22

// c is a count as Conduit stores it, u64 big-endian.
func c(n uint64) string {
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = byte(n)
		n >>= 8
	}
	return string(b[:])
}

func unhex(t *testing.T, s string) string {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// row is one expected key and value.
type row struct{ key, value string }

// wantTree asserts that the rows of tree whose keys start with prefix are exactly want.
func wantTree(t *testing.T, db *conduit.DB, tree, prefix string, want ...row) {
	t.Helper()
	keys, values, err := db.Rows(tree, []byte(prefix))
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for i := range keys {
		got = append(got, row{string(keys[i]), string(values[i])})
	}
	if len(got) != len(want) {
		t.Fatalf("%s[%q…]: %d rows %q, want %d %q", tree, prefix, len(got), got, len(want), want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s row %d:\n got key %q value %q\nwant key %q value %q", tree, i, got[i].key, got[i].value, want[i].key, want[i].value)
		}
	}
}

func update(t *testing.T, db *conduit.DB, fn func(tx *conduit.Tx) error) conduit.Changes {
	t.Helper()
	ch, err := db.Update(fn)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func withAlice(t *testing.T, version int, devices ...string) *conduit.DB {
	t.Helper()
	db, _ := openFresh(t, version)
	if n, _ := db.Counter(); n != freshCount {
		t.Fatalf("fresh counter %d, want %d", n, freshCount)
	}
	update(t, db, func(tx *conduit.Tx) error {
		if err := tx.PutUser(conduit.User{ID: alice, PasswordHash: "hash"}); err != nil {
			return err
		}
		for _, d := range devices {
			if err := tx.PutDevice(alice, conduit.Device{ID: d}); err != nil {
				return err
			}
		}
		return nil
	})
	return db
}

// global["keypair"] = version 0xFF PKCS#8 v1 DER: src/database/key_value/globals.rs::load_keypair;
// ruma crates/ruma-signatures/src/ed25519.rs::Ed25519KeyPair::from_der accepts v1.
func TestLayoutGlobalKeypair(t *testing.T) {
	db, _ := openFresh(t, 18)
	seed := bytes.Repeat([]byte{0x01}, 32)
	update(t, db, func(tx *conduit.Tx) error { return tx.SetKeypair("a_AbCd", seed) })
	want := "a_AbCd\xff" + unhex(t, "302e020100300506032b657004220420") + string(seed)
	wantTree(t, db, "global", "keypair", row{"keypair", want})
	// the same bytes as `shim keys -conduit` prints
	if k := (signing.Key{ID: "ed25519:a_AbCd", Seed: seed}); string(k.ConduitKeypair()) != want {
		t.Errorf("signing.Key.ConduitKeypair differs: %x", k.ConduitKeypair())
	}
	v, s, err := db.Keypair()
	if err != nil || v != "a_AbCd" || !bytes.Equal(s, seed) {
		t.Fatalf("reader: %q %x %v", v, s, err)
	}
	for _, bad := range []func(tx *conduit.Tx) error{
		func(tx *conduit.Tx) error { return tx.SetKeypair("", seed) },
		func(tx *conduit.Tx) error { return tx.SetKeypair("a:b", seed) },
		func(tx *conduit.Tx) error { return tx.SetKeypair("a_x", seed[:31]) },
	} {
		if _, err := db.Update(bad); err == nil {
			t.Error("bad keypair accepted")
		}
	}
}

// server_signingkeys[server] = ruma ServerSigningKeys JSON, every field present:
// src/service/globals/mod.rs::signing_keys_for, src/database/key_value/globals.rs::add_signing_key.
func TestLayoutServerSigningKeys(t *testing.T) {
	db, _ := openFresh(t, 18)
	pub := signing.EncodeBase64(bytes.Repeat([]byte{2}, 32))
	old := signing.EncodeBase64(bytes.Repeat([]byte{3}, 32))
	update(t, db, func(tx *conduit.Tx) error {
		return tx.SetServerSigningKeys(server, conduit.ServerSigningKeys{
			VerifyKeys:    map[string]string{"ed25519:a_new": pub},
			OldVerifyKeys: map[string]conduit.OldVerifyKey{"ed25519:a_old": {Key: old, ExpiredTS: 1600000000000}},
			ValidUntilTS:  2000000000000,
		})
	})
	wantTree(t, db, "server_signingkeys", "", row{server,
		`{"old_verify_keys":{"ed25519:a_old":{"expired_ts":1600000000000,"key":"` + old + `"}},"server_name":"example.org","signatures":{},"valid_until_ts":2000000000000,"verify_keys":{"ed25519:a_new":{"key":"` + pub + `"}}}`})
	doc, ok, err := db.ServerSigningKeys(server)
	if err != nil || !ok || doc.VerifyKeys["ed25519:a_new"] != pub || doc.OldVerifyKeys["ed25519:a_old"].ExpiredTS != 1600000000000 {
		t.Fatalf("reader: %+v %v %v", doc, ok, err)
	}
}

// userid_password, userid_displayname, userid_avatarurl, userid_blurhash: user ID → UTF-8 string;
// empty password = deactivated (src/database/key_value/users.rs::set_password, is_deactivated,
// set_displayname, set_avatar_url, set_blurhash).
func TestLayoutUsers(t *testing.T) {
	db, _ := openFresh(t, 18)
	update(t, db, func(tx *conduit.Tx) error {
		if err := tx.PutUser(conduit.User{ID: alice, PasswordHash: "$2b$12$x", DisplayName: "Alice ✓", AvatarURL: "mxc://example.org/av", Blurhash: "LEHV6n"}); err != nil {
			return err
		}
		return tx.PutUser(conduit.User{ID: "@bob:example.org"}) // deactivated
	})
	wantTree(t, db, "userid_password", "@", row{"@alice:example.org", "$2b$12$x"}, row{"@bob:example.org", ""}, row{"@conduit:example.org", ""})
	wantTree(t, db, "userid_displayname", "", row{alice, "Alice ✓"})
	wantTree(t, db, "userid_avatarurl", "", row{alice, "mxc://example.org/av"})
	wantTree(t, db, "userid_blurhash", "", row{alice, "LEHV6n"})
	// Clearing a profile field removes its row, as Conduit does for None.
	update(t, db, func(tx *conduit.Tx) error { return tx.PutUser(conduit.User{ID: alice, PasswordHash: "$2b$12$x"}) })
	wantTree(t, db, "userid_displayname", "")
	wantTree(t, db, "userid_avatarurl", "")
	// Conduit's own user and foreign users are refused.
	for _, id := range []string{"@conduit:example.org", "@eve:other.org", "alice"} {
		if _, err := db.Update(func(tx *conduit.Tx) error { return tx.PutUser(conduit.User{ID: id, PasswordHash: "x"}) }); err == nil {
			t.Errorf("PutUser(%s) accepted", id)
		}
	}
}

// userdeviceid_metadata[user 0xFF device] = ruma Device JSON (display_name/last_seen_ip null when
// absent, last_seen_ts omitted); userid_devicelistversion[user] = u64 BE incremented per change
// (src/database/key_value/users.rs::create_device, update_device_metadata; ruma-client-api
// src/device.rs::Device).
func TestLayoutDevices(t *testing.T) {
	db := withAlice(t, 18)
	update(t, db, func(tx *conduit.Tx) error {
		if err := tx.PutDevice(alice, conduit.Device{ID: "DEV1", DisplayName: "phone", LastSeenIP: "10.0.0.1", LastSeenTS: 1700000000000}); err != nil {
			return err
		}
		return tx.PutDevice(alice, conduit.Device{ID: "DEV2"})
	})
	wantTree(t, db, "userdeviceid_metadata", alice,
		row{alice + "\xffDEV1", `{"device_id":"DEV1","display_name":"phone","last_seen_ip":"10.0.0.1","last_seen_ts":1700000000000}`},
		row{alice + "\xffDEV2", `{"device_id":"DEV2","display_name":null,"last_seen_ip":null}`})
	wantTree(t, db, "userid_devicelistversion", "", row{alice, c(1)})
	// unchanged: no bump; changed: one bump per Update
	if ch := update(t, db, func(tx *conduit.Tx) error { return tx.PutDevice(alice, conduit.Device{ID: "DEV2"}) }); ch.Total() != 0 {
		t.Fatalf("unchanged device wrote %+v", ch)
	}
	update(t, db, func(tx *conduit.Tx) error {
		return tx.PutDevice(alice, conduit.Device{ID: "DEV2", DisplayName: "laptop"})
	})
	wantTree(t, db, "userid_devicelistversion", "", row{alice, c(2)})
	if n, _ := db.Counter(); n != freshCount {
		t.Errorf("device writes moved global[\"c\"] to %d; the device list version is a per-user counter", n)
	}
	if _, err := db.Update(func(tx *conduit.Tx) error { return tx.PutDevice("@nobody:example.org", conduit.Device{ID: "X"}) }); err == nil {
		t.Error("device of a missing user accepted")
	}
}

// keyid_key[user 0xFF device] = DeviceKeys JSON; keychangeid_userid[user 0xFF count] = user
// (src/database/key_value/users.rs::add_device_keys, mark_device_key_update).
func TestLayoutDeviceKeys(t *testing.T) {
	db := withAlice(t, 18, "DEV1")
	keys := `{"algorithms":["m.olm.v1.curve25519-aes-sha2"],"device_id":"DEV1","keys":{"ed25519:DEV1":"edkey"},"signatures":{},"user_id":"@alice:example.org"}`
	// input in another key order and spacing: stored canonical
	update(t, db, func(tx *conduit.Tx) error {
		return tx.PutDeviceKeys(alice, "DEV1", json.RawMessage(`{"user_id": "@alice:example.org", "device_id": "DEV1", "keys": {"ed25519:DEV1": "edkey"}, "algorithms": ["m.olm.v1.curve25519-aes-sha2"], "signatures": {}}`))
	})
	wantTree(t, db, "keyid_key", alice, row{alice + "\xffDEV1", keys})
	wantTree(t, db, "keychangeid_userid", alice, row{alice + "\xff" + c(freshCount+1), alice})
	wantTree(t, db, "global", "c", row{"c", c(freshCount + 1)})
	if _, err := db.Update(func(tx *conduit.Tx) error {
		return tx.PutDeviceKeys(alice, "DEV1", json.RawMessage(`{"user_id":"@bob:example.org","device_id":"DEV1"}`))
	}); err == nil {
		t.Error("device keys naming another user accepted")
	}
}

// keyid_key[user 0xFF <public key>] = CrossSigningKey JSON; userid_masterkeyid,
// userid_selfsigningkeyid, userid_usersigningkeyid[user] = that keyid_key key
// (src/database/key_value/users.rs::add_cross_signing_keys, parse_master_key).
func TestLayoutCrossSigningKeys(t *testing.T) {
	db := withAlice(t, 18)
	update(t, db, func(tx *conduit.Tx) error {
		for _, k := range []struct{ usage, pub string }{{"master", "MPUB"}, {"self_signing", "SPUB"}, {"user_signing", "UPUB"}} {
			raw := `{"keys":{"ed25519:` + k.pub + `":"` + k.pub + `"},"usage":["` + k.usage + `"],"user_id":"@alice:example.org"}`
			if err := tx.PutCrossSigningKey(alice, k.usage, json.RawMessage(raw)); err != nil {
				return err
			}
		}
		return nil
	})
	wantTree(t, db, "keyid_key", alice,
		row{alice + "\xffMPUB", `{"keys":{"ed25519:MPUB":"MPUB"},"usage":["master"],"user_id":"@alice:example.org"}`},
		row{alice + "\xffSPUB", `{"keys":{"ed25519:SPUB":"SPUB"},"usage":["self_signing"],"user_id":"@alice:example.org"}`},
		row{alice + "\xffUPUB", `{"keys":{"ed25519:UPUB":"UPUB"},"usage":["user_signing"],"user_id":"@alice:example.org"}`})
	wantTree(t, db, "userid_masterkeyid", "", row{alice, alice + "\xffMPUB"})
	wantTree(t, db, "userid_selfsigningkeyid", "", row{alice, alice + "\xffSPUB"})
	wantTree(t, db, "userid_usersigningkeyid", "", row{alice, alice + "\xffUPUB"})
	// one key change marker for the whole Update
	wantTree(t, db, "keychangeid_userid", alice, row{alice + "\xff" + c(freshCount+1), alice})
	if _, err := db.Update(func(tx *conduit.Tx) error {
		return tx.PutCrossSigningKey(alice, "master", json.RawMessage(`{"keys":{"ed25519:A":"A","ed25519:B":"B"},"usage":["master"],"user_id":"@alice:example.org"}`))
	}); err == nil {
		t.Error("master key with two keys accepted (Conduit refuses it)")
	}
}

// roomuserdataid_accountdata[room 0xFF user 0xFF count 0xFF type] = {"content","type"};
// roomusertype_roomuserdataid[room 0xFF user 0xFF type] = that key; global = empty room
// (src/database/key_value/account_data.rs::update).
func TestLayoutAccountData(t *testing.T) {
	db := withAlice(t, 18)
	update(t, db, func(tx *conduit.Tx) error {
		if err := tx.PutAccountData("", alice, "m.push_rules", json.RawMessage(`{"global":{"override":[]}}`)); err != nil {
			return err
		}
		return tx.PutAccountData("!r:example.org", alice, "m.tag", json.RawMessage(`{"tags":{"u.work":{"order":0.5}}}`))
	})
	global := "\xff" + alice + "\xff" + c(freshCount+1) + "\xffm.push_rules"
	room := "!r:example.org\xff" + alice + "\xff" + c(freshCount+2) + "\xffm.tag"
	wantTree(t, db, "roomuserdataid_accountdata", "\xff"+alice, row{global, `{"content":{"global":{"override":[]}},"type":"m.push_rules"}`})
	wantTree(t, db, "roomuserdataid_accountdata", "!r:example.org", row{room, `{"content":{"tags":{"u.work":{"order":0.5}}},"type":"m.tag"}`})
	wantTree(t, db, "roomusertype_roomuserdataid", "\xff"+alice, row{"\xff" + alice + "\xffm.push_rules", global})
	wantTree(t, db, "roomusertype_roomuserdataid", "!r:", row{"!r:example.org\xff" + alice + "\xffm.tag", room})
	// changed content moves to a new count and the old row goes, as Conduit's update does
	update(t, db, func(tx *conduit.Tx) error {
		return tx.PutAccountData("", alice, "m.push_rules", json.RawMessage(`{"global":{}}`))
	})
	moved := "\xff" + alice + "\xff" + c(freshCount+3) + "\xffm.push_rules"
	wantTree(t, db, "roomuserdataid_accountdata", "\xff"+alice, row{moved, `{"content":{"global":{}},"type":"m.push_rules"}`})
	wantTree(t, db, "roomusertype_roomuserdataid", "\xff"+alice, row{"\xff" + alice + "\xffm.push_rules", moved})
	ad, err := db.AccountData(alice)
	if err != nil || string(ad[""]["m.push_rules"]) != `{"global":{}}` || string(ad["!r:example.org"]["m.tag"]) != `{"tags":{"u.work":{"order":0.5}}}` {
		t.Fatalf("reader: %s %v", ad, err)
	}
}

// senderkey_pusher[user 0xFF pushkey] = the POST /pushers/set body (src/database/key_value/pusher.rs
// ::set_pusher; ruma-client-api src/push/set_pusher/set_pusher_serde.rs, pusher_serde.rs).
func TestLayoutPushers(t *testing.T) {
	db := withAlice(t, 18)
	update(t, db, func(tx *conduit.Tx) error {
		// a GET /pushers entry from Synapse, with fields Conduit does not keep
		return tx.PutPusher(alice, json.RawMessage(`{"app_display_name":"App","app_id":"im.app.android","data":{"format":"event_id_only","url":"https://push.example/_matrix/push/v1/notify"},"device_display_name":"phone","kind":"http","lang":"en","profile_tag":null,"pushkey":"PK1","enabled":true,"device_id":"DEV1","append":false}`))
	})
	wantTree(t, db, "senderkey_pusher", alice, row{alice + "\xffPK1",
		`{"app_display_name":"App","app_id":"im.app.android","data":{"format":"event_id_only","url":"https://push.example/_matrix/push/v1/notify"},"device_display_name":"phone","kind":"http","lang":"en","pushkey":"PK1"}`})
	if _, err := db.Update(func(tx *conduit.Tx) error { return tx.PutPusher(alice, json.RawMessage(`{"pushkey":"x"}`)) }); err == nil || !strings.Contains(err.Error(), "app_id") {
		t.Errorf("incomplete pusher: %v", err)
	}
}

// backupid_algorithm[user 0xFF version] = BackupAlgorithm JSON; backupid_etag[user 0xFF version] =
// count; backupkeyid_backup[user 0xFF version 0xFF room 0xFF session] = KeyBackupData JSON
// (src/database/key_value/key_backups.rs::create_backup, add_key).
func TestLayoutKeyBackups(t *testing.T) {
	db := withAlice(t, 18)
	update(t, db, func(tx *conduit.Tx) error {
		if err := tx.PutBackupVersion(alice, "1", json.RawMessage(`{"auth_data":{"public_key":"pk"},"algorithm":"m.megolm_backup.v1.curve25519-aes-sha2"}`)); err != nil {
			return err
		}
		for _, s := range []string{"s1", "s2"} {
			if err := tx.PutBackupSession(alice, "1", "!r:example.org", s, json.RawMessage(`{"first_message_index":1,"forwarded_count":0,"is_verified":true,"session_data":{"ciphertext":"`+s+`"}}`)); err != nil {
				return err
			}
		}
		return nil
	})
	v := alice + "\xff1"
	wantTree(t, db, "backupid_algorithm", alice, row{v, `{"algorithm":"m.megolm_backup.v1.curve25519-aes-sha2","auth_data":{"public_key":"pk"}}`})
	wantTree(t, db, "backupid_etag", alice, row{v, c(freshCount + 1)})
	wantTree(t, db, "backupkeyid_backup", alice,
		row{v + "\xff!r:example.org\xffs1", `{"first_message_index":1,"forwarded_count":0,"is_verified":true,"session_data":{"ciphertext":"s1"}}`},
		row{v + "\xff!r:example.org\xffs2", `{"first_message_index":1,"forwarded_count":0,"is_verified":true,"session_data":{"ciphertext":"s2"}}`})
	// a changed session gives a new etag; an unchanged one does not
	update(t, db, func(tx *conduit.Tx) error {
		return tx.PutBackupSession(alice, "1", "!r:example.org", "s2", json.RawMessage(`{"first_message_index":0,"forwarded_count":0,"is_verified":true,"session_data":{"ciphertext":"s2"}}`))
	})
	wantTree(t, db, "backupid_etag", alice, row{v, c(freshCount + 2)})
	if _, err := db.Update(func(tx *conduit.Tx) error {
		return tx.PutBackupSession(alice, "7", "!r:example.org", "s", json.RawMessage(`{}`))
	}); err == nil {
		t.Error("session of a missing backup version accepted")
	}
	bs, err := db.Backups(alice)
	if err != nil || len(bs) != 1 || bs[0].Etag != freshCount+2 || len(bs[0].Sessions["!r:example.org"]) != 2 {
		t.Fatalf("reader: %+v %v", bs, err)
	}
}

// userdeviceid_token[user 0xFF device] = token; token_userdeviceid[token] = user 0xFF device; a
// new token of the device removes the old one (src/database/key_value/users.rs::set_token).
func TestLayoutAccessTokens(t *testing.T) {
	db := withAlice(t, 18, "DEV1", "DEV2")
	update(t, db, func(tx *conduit.Tx) error {
		if err := tx.PutAccessToken(alice, "DEV1", "syt_old"); err != nil {
			return err
		}
		return tx.PutAccessToken(alice, "DEV2", "syt_two")
	})
	update(t, db, func(tx *conduit.Tx) error { return tx.PutAccessToken(alice, "DEV1", "syt_new") })
	wantTree(t, db, "userdeviceid_token", alice, row{alice + "\xffDEV1", "syt_new"}, row{alice + "\xffDEV2", "syt_two"})
	wantTree(t, db, "token_userdeviceid", "", row{"syt_new", alice + "\xffDEV1"}, row{"syt_two", alice + "\xffDEV2"})
	for _, bad := range []func(tx *conduit.Tx) error{
		func(tx *conduit.Tx) error { return tx.PutAccessToken(alice, "DEV2", "syt_new") }, // another device's token
		func(tx *conduit.Tx) error { return tx.PutAccessToken(alice, "NODEV", "syt_x") },  // Conduit asserts the device exists
	} {
		if _, err := db.Update(bad); err == nil {
			t.Error("bad token accepted")
		}
	}
}

// onetimekeyid_onetimekeys[user 0xFF device 0xFF "\"alg:id\""] = key JSON;
// userid_lastonetimekeyupdate[user] = count (src/database/key_value/users.rs::add_one_time_key).
func TestLayoutOneTimeKeys(t *testing.T) {
	db := withAlice(t, 18, "DEV1")
	update(t, db, func(tx *conduit.Tx) error {
		if err := tx.PutOneTimeKey(alice, "DEV1", "signed_curve25519:AAAAHg", json.RawMessage(`{"key":"k1","signatures":{}}`)); err != nil {
			return err
		}
		return tx.PutOneTimeKey(alice, "DEV1", "signed_curve25519:AAAAHQ", json.RawMessage(`{"key":"k2","signatures":{}}`))
	})
	wantTree(t, db, "onetimekeyid_onetimekeys", alice,
		row{alice + "\xffDEV1\xff\"signed_curve25519:AAAAHQ\"", `{"key":"k2","signatures":{}}`},
		row{alice + "\xffDEV1\xff\"signed_curve25519:AAAAHg\"", `{"key":"k1","signatures":{}}`})
	wantTree(t, db, "userid_lastonetimekeyupdate", "", row{alice, c(freshCount + 1)})
}

// Conduit ≥ 0.10 media: filehash_metadata[sha256] = size ++ created ++ last access (u64 BE secs);
// servernamemediaid_metadata[server 0xFF id] = sha256 ++ filename 0xFF content type [0xFF];
// filehash_servername_mediaid[sha256 ++ server 0xFF id] = ""; servername_userlocalpart_mediaid
// [server 0xFF localpart 0xFF id] = ""; servernamemediaid_userlocalpart[server 0xFF id] = localpart
// (src/database/key_value/media.rs::create_file_metadata, FilehashMetadata); file at
// <media>/d0/13/<rest of hex> (src/service/globals/mod.rs::get_media_path, src/config/mod.rs
// DirectoryStructure::default deep length 2 depth 2).
func TestLayoutMediaContentAddressed(t *testing.T) {
	for _, version := range []int{17, 18} {
		db, dir := openFresh(t, version)
		if db.MediaLayout() != conduit.MediaContentAddressed {
			t.Fatalf("version %d: layout %v", version, db.MediaLayout())
		}
		update(t, db, func(tx *conduit.Tx) error {
			if err := tx.PutUser(conduit.User{ID: alice, PasswordHash: "h"}); err != nil {
				return err
			}
			if err := tx.PutMediaBytes(conduit.Media{Server: server, MediaID: "m1", Uploader: alice, ContentType: "image/png", Filename: "a.png", CreatedTS: 1700000000123}, []byte("png bytes")); err != nil {
				return err
			}
			// same bytes under a second ID, legacy-accessible: one file, two IDs
			return tx.PutMediaBytes(conduit.Media{Server: server, MediaID: "m2", UnauthenticatedAccess: true}, []byte("png bytes"))
		})
		sum := unhex(t, "d013614dc14a37ee20fe92005737ab7d3427e7e93580ad56ef8a42205e7f7a4e")
		wantTree(t, db, "filehash_metadata", "", row{sum, c(9) + c(1700000000) + c(1700000000)})
		wantTree(t, db, "servernamemediaid_metadata", "",
			row{"example.org\xffm1", sum + "a.png\xffimage/png"},
			row{"example.org\xffm2", sum + "\xff\xff"})
		wantTree(t, db, "filehash_servername_mediaid", "", row{sum + "example.org\xffm1", ""}, row{sum + "example.org\xffm2", ""})
		wantTree(t, db, "servername_userlocalpart_mediaid", "", row{"example.org\xffalice\xffm1", ""})
		wantTree(t, db, "servernamemediaid_userlocalpart", "", row{"example.org\xffm1", "alice"})
		file := filepath.Join(dir, "media", "d0", "13", "614dc14a37ee20fe92005737ab7d3427e7e93580ad56ef8a42205e7f7a4e")
		b, err := os.ReadFile(file)
		if err != nil || string(b) != "png bytes" {
			t.Fatalf("file: %q %v", b, err)
		}
		checkMode(t, file, 0o600)
		checkMode(t, filepath.Join(dir, "media", "d0", "13"), 0o700|os.ModeDir)
		checkMode(t, filepath.Join(dir, "media"), 0o700|os.ModeDir)
		mf, ok, err := db.Media(server, "m1")
		if err != nil || !ok || mf.Uploader != alice || mf.Size != 9 || string(mf.Content) != "png bytes" || mf.UnauthenticatedAccess {
			t.Fatalf("reader: %+v %v %v", mf, ok, err)
		}
		if mf, _, _ := db.Media(server, "m2"); !mf.UnauthenticatedAccess {
			t.Error("reader lost the unauthenticated access mark")
		}
		onlyMediaFiles(t, filepath.Join(dir, "media"), 1)
	}
}

// Conduit 0.9 media: mediaid_file["mxc://server/id" 0xFF w0 h0 (u32 BE) 0xFF content disposition
// 0xFF content type] = ""; file <media>/<base64url(key)> (v0.9.0 src/database/key_value/media.rs
// ::create_file_metadata, src/service/globals/mod.rs::get_media_file, src/service/media/mod.rs::create).
func TestLayoutMediaLegacy(t *testing.T) {
	db, dir := openFresh(t, 16)
	if db.MediaLayout() != conduit.MediaLegacy {
		t.Fatalf("layout %v", db.MediaLayout())
	}
	update(t, db, func(tx *conduit.Tx) error {
		return tx.PutMediaBytes(conduit.Media{Server: server, MediaID: "m1", Filename: "a.png", ContentType: "image/png"}, []byte("png bytes"))
	})
	key := "mxc://example.org/m1\xff\x00\x00\x00\x00\x00\x00\x00\x00\xffinline; filename=a.png\xffimage/png"
	wantTree(t, db, "mediaid_file", "", row{key, ""})
	file := filepath.Join(dir, "media", "bXhjOi8vZXhhbXBsZS5vcmcvbTH_AAAAAAAAAAD_aW5saW5lOyBmaWxlbmFtZT1hLnBuZ_9pbWFnZS9wbmc")
	if b, err := os.ReadFile(file); err != nil || string(b) != "png bytes" {
		t.Fatalf("file: %q %v", b, err)
	}
	checkMode(t, file, 0o600)
	// new metadata for the same ID replaces the row Conduit 0.9 would find first
	update(t, db, func(tx *conduit.Tx) error {
		return tx.PutMediaBytes(conduit.Media{Server: server, MediaID: "m1", Filename: "b.png", ContentType: "image/png"}, []byte("png bytes"))
	})
	wantTree(t, db, "mediaid_file", "", row{"mxc://example.org/m1\xff\x00\x00\x00\x00\x00\x00\x00\x00\xffinline; filename=b.png\xffimage/png", ""})
	mf, ok, err := db.Media(server, "m1")
	if err != nil || !ok || mf.Filename != "b.png" || string(mf.Content) != "png bytes" {
		t.Fatalf("reader: %+v %v %v", mf, ok, err)
	}
}

// ContentDisposition follows ruma-common's Display (src/http_headers/content_disposition.rs at the
// revision Conduit 0.9.0 pins): a token bare, other ASCII quoted, non-ASCII as RFC 8187.
func TestContentDisposition(t *testing.T) {
	for in, want := range map[string]string{
		"":              "inline",
		"a.png":         "inline; filename=a.png",
		"my file.txt":   `inline; filename="my file.txt"`,
		`q"uo\te`:       `inline; filename="q\"uo\\te"`,
		"tab\x01ctl":    "inline; filename=tabctl",
		"\x01":          `inline; filename=""`,
		"café menu.pdf": "inline; filename*=utf-8''caf%C3%A9%20menu.pdf",
	} {
		if got := conduit.ContentDisposition(in); got != want {
			t.Errorf("ContentDisposition(%q) = %q, want %q", in, got, want)
		}
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
	}
}

// onlyMediaFiles asserts that the media tree holds n regular files and no temporary ones.
func onlyMediaFiles(t *testing.T, media string, n int) {
	t.Helper()
	var files []string
	filepath.WalkDir(media, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != n {
		t.Fatalf("media files %v, want %d", files, n)
	}
}

// global["c"]: u64 BE, only raised, written once per Update (src/database/key_value/globals.rs
// ::next_count, src/utils/mod.rs::increment restarts at 1 for another width).
func TestCounterRule(t *testing.T) {
	db := withAlice(t, 18)
	update(t, db, func(tx *conduit.Tx) error {
		tx.RaiseCounter(5) // lower than the counter: ignored
		if tx.Counter() != freshCount {
			t.Errorf("RaiseCounter lowered the counter to %d", tx.Counter())
		}
		return nil
	})
	wantTree(t, db, "global", "c", row{"c", c(freshCount)})
	// a numeric backup version (Synapse's) above the counter raises it: Conduit names new versions by count
	update(t, db, func(tx *conduit.Tx) error {
		return tx.PutBackupVersion(alice, "1000", json.RawMessage(`{"algorithm":"a","auth_data":{}}`))
	})
	wantTree(t, db, "global", "c", row{"c", c(1001)})
	wantTree(t, db, "backupid_etag", alice, row{alice + "\xff1000", c(1001)})
}

// A failed Update writes nothing: no rows, no counter, no media file.
func TestUpdateRollsBack(t *testing.T) {
	db, dir := openFresh(t, 18)
	boom := errors.New("boom")
	_, err := db.Update(func(tx *conduit.Tx) error {
		if err := tx.PutUser(conduit.User{ID: alice, PasswordHash: "h"}); err != nil {
			return err
		}
		if err := tx.PutAccountData("", alice, "m.x", json.RawMessage(`{}`)); err != nil {
			return err
		}
		if err := tx.PutMediaBytes(conduit.Media{Server: server, MediaID: "m1"}, []byte("x")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if u, _ := db.Users(); len(u) != 1 {
		t.Errorf("users after rollback: %v", u)
	}
	if n, _ := db.Counter(); n != freshCount {
		t.Errorf("counter after rollback: %d", n)
	}
	onlyMediaFiles(t, filepath.Join(dir, "media"), 0)
	// the rerun writes it all, and a third run nothing
	run := func(tx *conduit.Tx) error {
		if err := tx.PutUser(conduit.User{ID: alice, PasswordHash: "h"}); err != nil {
			return err
		}
		return tx.PutMediaBytes(conduit.Media{Server: server, MediaID: "m1"}, []byte("x"))
	}
	if ch := update(t, db, run); ch.Files != 1 {
		t.Fatalf("rerun: %+v", ch)
	}
	if ch := update(t, db, run); ch.Total() != 0 {
		t.Fatalf("third run: %+v", ch)
	}
	onlyMediaFiles(t, filepath.Join(dir, "media"), 1)
}

// A media file with other bytes is replaced only when the Update commits; a failed Update puts the
// previous file back and leaves no temporary file.
func TestMediaFileReplacedOnlyOnCommit(t *testing.T) {
	db, dir := openFresh(t, 16)
	m := conduit.Media{Server: server, MediaID: "m1", Filename: "a.png", ContentType: "image/png"}
	file := conduit.LegacyMediaPath(filepath.Join(dir, "media"), conduit.LegacyMediaKey(m))
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("older bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if _, err := db.Update(func(tx *conduit.Tx) error {
		if err := tx.PutMediaBytes(m, []byte("new bytes")); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); string(b) != "older bytes" {
		t.Fatalf("after a failed Update the file holds %q", b)
	}
	onlyMediaFiles(t, filepath.Join(dir, "media"), 1)
	update(t, db, func(tx *conduit.Tx) error { return tx.PutMediaBytes(m, []byte("new bytes")) })
	if b, _ := os.ReadFile(file); string(b) != "new bytes" {
		t.Fatalf("after the Update the file holds %q", b)
	}
	onlyMediaFiles(t, filepath.Join(dir, "media"), 1)
}
