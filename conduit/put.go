package conduit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/transition-matrix/transition-matrix/signing"
)

// pkcs8V1Prefix is the DER of a PKCS#8 v1 Ed25519 PrivateKeyInfo (RFC 8410) up to the 32-byte seed;
// ruma's Ed25519KeyPair::from_der accepts it (crates/ruma-signatures/src/ed25519.rs).
var pkcs8V1Prefix = []byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}

// SetKeypair writes global["keypair"] = version 0xFF PKCS#8 v1 DER of the Ed25519 seed
// (src/database/key_value/globals.rs::load_keypair). Conduit then signs as ed25519:<version>.
func (tx *Tx) SetKeypair(version string, seed []byte) error {
	if version == "" || !isASCII([]byte(version)) || strings.ContainsAny(version, "\xff:") {
		return fmt.Errorf("conduit keypair: key version %q must be non-empty ASCII without ':'", version)
	}
	if len(seed) != ed25519.SeedSize {
		return fmt.Errorf("conduit keypair: seed is %d bytes, not %d", len(seed), ed25519.SeedSize)
	}
	v := append([]byte(version), sep)
	v = append(v, pkcs8V1Prefix...)
	v = append(v, seed...)
	return tx.set("global", []byte("keypair"), v)
}

// ServerSigningKeys is what Conduit keeps per server in server_signingkeys: the current keys,
// the old ones with the time they expired, and how long the set is valid.
type ServerSigningKeys struct {
	VerifyKeys    map[string]string       // key ID ("ed25519:a_xxxx") → unpadded base64 public key
	OldVerifyKeys map[string]OldVerifyKey // key ID → old key
	ValidUntilTS  int64                   // milliseconds
}

// OldVerifyKey is a key that signed until ExpiredTS (milliseconds).
type OldVerifyKey struct {
	Key       string
	ExpiredTS int64
}

// SetServerSigningKeys writes server_signingkeys[server] as ruma's ServerSigningKeys JSON with every
// field present (src/service/globals/mod.rs::signing_keys_for re-parses it), signatures empty.
func (tx *Tx) SetServerSigningKeys(server string, doc ServerSigningKeys) error {
	if server == "" {
		return errors.New("conduit signing keys: empty server name")
	}
	if len(doc.VerifyKeys) == 0 {
		return fmt.Errorf("conduit signing keys of %s: no current key", server)
	}
	type vk struct {
		Key string `json:"key"`
	}
	type ovk struct {
		ExpiredTS int64  `json:"expired_ts"`
		Key       string `json:"key"`
	}
	out := struct {
		OldVerifyKeys map[string]ovk `json:"old_verify_keys"`
		ServerName    string         `json:"server_name"`
		Signatures    struct{}       `json:"signatures"`
		ValidUntilTS  int64          `json:"valid_until_ts"`
		VerifyKeys    map[string]vk  `json:"verify_keys"`
	}{OldVerifyKeys: map[string]ovk{}, ServerName: server, ValidUntilTS: doc.ValidUntilTS, VerifyKeys: map[string]vk{}}
	for id, k := range doc.VerifyKeys {
		if err := checkPublicKey(id, k); err != nil {
			return fmt.Errorf("conduit signing keys of %s: %w", server, err)
		}
		out.VerifyKeys[id] = vk{k}
	}
	for id, k := range doc.OldVerifyKeys {
		if err := checkPublicKey(id, k.Key); err != nil {
			return fmt.Errorf("conduit signing keys of %s: %w", server, err)
		}
		out.OldVerifyKeys[id] = ovk{k.ExpiredTS, k.Key}
	}
	v, err := canonical(out)
	if err != nil {
		return err
	}
	return tx.set("server_signingkeys", []byte(server), v)
}

func checkPublicKey(id, key string) error {
	if !strings.HasPrefix(id, "ed25519:") {
		return fmt.Errorf("key ID %q is not ed25519:<version>", id)
	}
	b, err := signing.DecodeBase64(key)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return fmt.Errorf("key %s is not an unpadded base64 Ed25519 public key", id)
	}
	return nil
}

// User is an account's row set: userid_password, userid_displayname, userid_avatarurl,
// userid_blurhash (src/database/key_value/users.rs).
type User struct {
	ID string
	// PasswordHash is stored as given; empty marks the user deactivated, as Conduit does. Give
	// users without a password an unusable non-empty hash instead.
	PasswordHash string
	DisplayName  string // empty: no row
	AvatarURL    string // mxc URI; empty: no row
	Blurhash     string // empty: no row
}

// PutUser writes a local user; empty profile fields remove their rows, as Conduit does for None.
func (tx *Tx) PutUser(u User) error {
	if err := tx.checkLocalUser(u.ID); err != nil {
		return err
	}
	if err := tx.set("userid_password", []byte(u.ID), []byte(u.PasswordHash)); err != nil {
		return err
	}
	for _, f := range []struct{ tree, value string }{
		{"userid_displayname", u.DisplayName},
		{"userid_avatarurl", u.AvatarURL},
		{"userid_blurhash", u.Blurhash},
	} {
		var err error
		if f.value == "" {
			err = tx.del(f.tree, []byte(u.ID))
		} else {
			err = tx.set(f.tree, []byte(u.ID), []byte(f.value))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkLocalUser refuses IDs that are not users of this server, and Conduit's own server user.
func (tx *Tx) checkLocalUser(user string) error {
	if !strings.HasPrefix(user, "@") || !strings.HasSuffix(user, ":"+tx.db.serverName) || len(user) < len(tx.db.serverName)+3 {
		return fmt.Errorf("conduit: %q is not a user ID of %s", user, tx.db.serverName)
	}
	if user == tx.db.ServerUser() {
		return fmt.Errorf("conduit: %s is Conduit's own server user; it is never imported", user)
	}
	return nil
}

// checkUserExists refuses writes for users Conduit does not know (its create_device asserts it).
func (tx *Tx) checkUserExists(user string) error {
	if err := tx.checkLocalUser(user); err != nil {
		return err
	}
	if _, ok, err := tx.get("userid_password", []byte(user)); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("conduit: user %s does not exist (PutUser first)", user)
	}
	return nil
}

// checkDeviceExists refuses writes for devices Conduit does not know (set_token and
// add_one_time_key assert that userdeviceid_metadata holds the device).
func (tx *Tx) checkDeviceExists(user, device string) error {
	if err := tx.checkLocalUser(user); err != nil {
		return err
	}
	if _, ok, err := tx.get("userdeviceid_metadata", userDeviceKey(user, device)); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("conduit: device %s of %s does not exist (PutDevice first)", device, user)
	}
	return nil
}

// Device is a row of userdeviceid_metadata: ruma's Device JSON.
type Device struct {
	ID          string
	DisplayName string // empty: null
	LastSeenIP  string // empty: null
	LastSeenTS  int64  // milliseconds; 0: absent
}

// deviceJSON encodes ruma's Device as serde does: fields in declaration order, display_name and
// last_seen_ip null when absent, last_seen_ts omitted when absent.
func deviceJSON(d Device) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"device_id":`)
	writeJSONString(&b, d.ID)
	b.WriteString(`,"display_name":`)
	writeJSONNullable(&b, d.DisplayName)
	b.WriteString(`,"last_seen_ip":`)
	writeJSONNullable(&b, d.LastSeenIP)
	if d.LastSeenTS > 0 {
		b.WriteString(`,"last_seen_ts":`)
		b.WriteString(strconv.FormatInt(d.LastSeenTS, 10))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeJSONString(b *bytes.Buffer, s string) { b.Write(jsonString(s)) }

// jsonString encodes s as serde_json does: no HTML escaping of <, >, &.
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func writeJSONNullable(b *bytes.Buffer, s string) {
	if s == "" {
		b.WriteString("null")
		return
	}
	writeJSONString(b, s)
}

// PutDevice writes userdeviceid_metadata[user 0xFF device]; a new or changed device bumps
// userid_devicelistversion[user] once per Update (src/database/key_value/users.rs::create_device).
func (tx *Tx) PutDevice(user string, d Device) error {
	if err := tx.checkUserExists(user); err != nil {
		return err
	}
	if d.ID == "" {
		return fmt.Errorf("conduit: empty device ID for %s", user)
	}
	v, err := deviceJSON(d)
	if err != nil {
		return err
	}
	changed, err := tx.put("userdeviceid_metadata", userDeviceKey(user, d.ID), v)
	if changed {
		tx.deviceListChanged[user] = true
	}
	return err
}

// PutDeviceKeys writes keyid_key[user 0xFF device] = the DeviceKeys JSON, and a key change marker
// when it changed (users.rs::add_device_keys, mark_device_key_update).
func (tx *Tx) PutDeviceKeys(user, device string, raw json.RawMessage) error {
	if err := tx.checkDeviceExists(user, device); err != nil {
		return err
	}
	var dk struct {
		UserID   string `json:"user_id"`
		DeviceID string `json:"device_id"`
	}
	if err := json.Unmarshal(raw, &dk); err != nil {
		return fmt.Errorf("conduit: device keys of %s %s: %w", user, device, err)
	}
	if dk.UserID != user || dk.DeviceID != device {
		return fmt.Errorf("conduit: device keys for %s %s name %q %q", user, device, dk.UserID, dk.DeviceID)
	}
	v, err := signing.CanonicalJSON(raw)
	if err != nil {
		return fmt.Errorf("conduit: device keys of %s %s: %w", user, device, err)
	}
	changed, err := tx.put("keyid_key", userDeviceKey(user, device), v)
	if changed {
		tx.keysChanged[user] = true
	}
	return err
}

// Cross-signing key usages and the index tree each one uses.
var crossSigningIndex = map[string]string{
	"master":       "userid_masterkeyid",
	"self_signing": "userid_selfsigningkeyid",
	"user_signing": "userid_usersigningkeyid",
}

// PutCrossSigningKey writes keyid_key[user 0xFF <public key>] = the CrossSigningKey JSON and the
// usage's index tree userid_*keyid[user] = that key (users.rs::add_cross_signing_keys).
func (tx *Tx) PutCrossSigningKey(user, usage string, raw json.RawMessage) error {
	index, ok := crossSigningIndex[usage]
	if !ok {
		return fmt.Errorf("conduit: cross-signing usage %q is not master, self_signing or user_signing", usage)
	}
	if err := tx.checkUserExists(user); err != nil {
		return err
	}
	var ck struct {
		UserID string            `json:"user_id"`
		Usage  []string          `json:"usage"`
		Keys   map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &ck); err != nil {
		return fmt.Errorf("conduit: %s key of %s: %w", usage, user, err)
	}
	if ck.UserID != user {
		return fmt.Errorf("conduit: %s key of %s names user %q", usage, user, ck.UserID)
	}
	if !slices.Contains(ck.Usage, usage) {
		return fmt.Errorf("conduit: %s key of %s has usage %v", usage, user, ck.Usage)
	}
	if len(ck.Keys) != 1 {
		return fmt.Errorf("conduit: %s key of %s holds %d keys, Conduit needs exactly one", usage, user, len(ck.Keys))
	}
	var public string
	for _, k := range ck.Keys {
		public = k
	}
	v, err := signing.CanonicalJSON(raw)
	if err != nil {
		return fmt.Errorf("conduit: %s key of %s: %w", usage, user, err)
	}
	key := joinS(user, public)
	c1, err := tx.put("keyid_key", key, v)
	if err != nil {
		return err
	}
	c2, err := tx.put(index, []byte(user), key)
	if c1 || c2 {
		tx.keysChanged[user] = true
	}
	return err
}

// PutAccountData writes one account data event (room "" = global): roomuserdataid_accountdata
// [room 0xFF user 0xFF count8 0xFF type] = {"content":…,"type":…} and roomusertype_roomuserdataid
// [room 0xFF user 0xFF type] = that key (src/database/key_value/account_data.rs::update). Unchanged
// content keeps its row and count; changed content moves to a new count, as Conduit does.
func (tx *Tx) PutAccountData(room, user, typ string, content json.RawMessage) error {
	if err := tx.checkUserExists(user); err != nil {
		return err
	}
	if typ == "" {
		return fmt.Errorf("conduit: empty account data type for %s", user)
	}
	if room != "" && !strings.HasPrefix(room, "!") {
		return fmt.Errorf("conduit: %q is not a room ID", room)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(content, &obj); err != nil || obj == nil {
		return fmt.Errorf("conduit: account data %s of %s is not a JSON object", typ, user)
	}
	v, err := canonical(map[string]any{"type": typ, "content": content})
	if err != nil {
		return err
	}
	indexKey := accountDataTypeKey(room, user, typ)
	prev, ok, err := tx.get("roomusertype_roomuserdataid", indexKey)
	if err != nil {
		return err
	}
	if ok {
		old, found, err := tx.get("roomuserdataid_accountdata", prev)
		if err != nil {
			return err
		}
		if found && bytes.Equal(old, v) {
			tx.changes.Unchanged += 2
			return nil
		}
	}
	dataKey := accountDataKey(room, user, tx.nextCount(), typ)
	if err := tx.set("roomuserdataid_accountdata", dataKey, v); err != nil {
		return err
	}
	if err := tx.set("roomusertype_roomuserdataid", indexKey, dataKey); err != nil {
		return err
	}
	if ok {
		return tx.del("roomuserdataid_accountdata", prev)
	}
	return nil
}

// PutPusher writes senderkey_pusher[user 0xFF pushkey] = the pusher as POST /pushers/set takes it
// (src/database/key_value/pusher.rs::set_pusher): pushkey, kind, app_id, app_display_name,
// device_display_name, profile_tag, lang, data; "append" is dropped. raw may be a GET /pushers entry.
func (tx *Tx) PutPusher(user string, raw json.RawMessage) error {
	if err := tx.checkUserExists(user); err != nil {
		return err
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(raw, &in); err != nil {
		return fmt.Errorf("conduit: pusher of %s: %w", user, err)
	}
	out := map[string]json.RawMessage{}
	var problems []string
	for _, f := range []string{"pushkey", "kind", "app_id", "app_display_name", "device_display_name", "lang"} {
		var s string
		if err := json.Unmarshal(in[f], &s); err != nil || in[f] == nil || (s == "" && (f == "pushkey" || f == "kind" || f == "app_id")) {
			problems = append(problems, f+" missing or not a string")
			continue
		}
		out[f] = in[f]
	}
	if d, ok := in["data"]; ok && bytes.HasPrefix(bytes.TrimSpace(d), []byte("{")) {
		out["data"] = d
	} else {
		problems = append(problems, "data missing or not an object")
	}
	if p, ok := in["profile_tag"]; ok && string(p) != "null" {
		out["profile_tag"] = p
	}
	if len(problems) > 0 {
		return fmt.Errorf("conduit: pusher of %s: %s", user, strings.Join(problems, ", "))
	}
	var pushkey string
	_ = json.Unmarshal(out["pushkey"], &pushkey)
	v, err := canonical(out)
	if err != nil {
		return err
	}
	return tx.set("senderkey_pusher", joinS(user, pushkey), v)
}

// PutBackupVersion writes backupid_algorithm[user 0xFF version] = {"algorithm":…,"auth_data":…}
// (src/database/key_value/key_backups.rs::create_backup); a new or changed version gets a new etag.
// A numeric version raises global["c"] to it, because Conduit names new versions by count.
func (tx *Tx) PutBackupVersion(user, version string, algorithm json.RawMessage) error {
	if err := tx.checkUserExists(user); err != nil {
		return err
	}
	if version == "" || strings.ContainsRune(version, '\xff') {
		return fmt.Errorf("conduit: bad key backup version %q of %s", version, user)
	}
	var alg struct {
		Algorithm string          `json:"algorithm"`
		AuthData  json.RawMessage `json:"auth_data"`
	}
	if err := json.Unmarshal(algorithm, &alg); err != nil || alg.Algorithm == "" || alg.AuthData == nil {
		return fmt.Errorf("conduit: key backup %s of %s: need {\"algorithm\":…,\"auth_data\":…}", version, user)
	}
	v, err := signing.CanonicalJSON(algorithm)
	if err != nil {
		return err
	}
	if n, err := strconv.ParseUint(version, 10, 64); err == nil {
		tx.RaiseCounter(n)
	}
	key := joinS(user, version)
	changed, err := tx.put("backupid_algorithm", key, v)
	if err != nil {
		return err
	}
	if _, ok, err := tx.get("backupid_etag", key); err != nil {
		return err
	} else if changed || !ok {
		tx.backupChanged[string(key)] = true
	}
	return nil
}

// PutBackupSession writes backupkeyid_backup[user 0xFF version 0xFF room 0xFF session] = the
// KeyBackupData JSON (key_backups.rs::add_key); a change gives the version a new etag.
func (tx *Tx) PutBackupSession(user, version, room, session string, raw json.RawMessage) error {
	if err := tx.checkUserExists(user); err != nil {
		return err
	}
	vkey := joinS(user, version)
	if _, ok, err := tx.get("backupid_algorithm", vkey); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("conduit: key backup version %s of %s does not exist (PutBackupVersion first)", version, user)
	}
	if !strings.HasPrefix(room, "!") || session == "" {
		return fmt.Errorf("conduit: key backup of %s: bad room %q or session %q", user, room, session)
	}
	v, err := signing.CanonicalJSON(raw)
	if err != nil {
		return fmt.Errorf("conduit: key backup session %s of %s: %w", session, user, err)
	}
	changed, err := tx.put("backupkeyid_backup", joinS(user, version, room, session), v)
	if changed {
		tx.backupChanged[string(vkey)] = true
	}
	return err
}

// PutAccessToken makes token the device's access token: userdeviceid_token[user 0xFF device] and
// token_userdeviceid[token] = user 0xFF device, removing the device's previous token
// (users.rs::set_token).
func (tx *Tx) PutAccessToken(user, device, token string) error {
	if err := tx.checkDeviceExists(user, device); err != nil {
		return err
	}
	if token == "" {
		return fmt.Errorf("conduit: empty access token for %s %s", user, device)
	}
	ud := userDeviceKey(user, device)
	if owner, ok, err := tx.get("token_userdeviceid", []byte(token)); err != nil {
		return err
	} else if ok && !bytes.Equal(owner, ud) {
		return fmt.Errorf("conduit: the access token given for %s %s already belongs to another device", user, device)
	}
	old, ok, err := tx.get("userdeviceid_token", ud)
	if err != nil {
		return err
	}
	if ok && string(old) != token {
		if err := tx.del("token_userdeviceid", old); err != nil {
			return err
		}
	}
	if err := tx.set("userdeviceid_token", ud, []byte(token)); err != nil {
		return err
	}
	return tx.set("token_userdeviceid", []byte(token), ud)
}

// PutOneTimeKey writes onetimekeyid_onetimekeys[user 0xFF device 0xFF "\"<alg>:<id>\""] = the key
// JSON, and userid_lastonetimekeyupdate[user] = a new count when it changed
// (users.rs::add_one_time_key; the key ID is stored JSON-quoted).
func (tx *Tx) PutOneTimeKey(user, device, keyID string, raw json.RawMessage) error {
	if err := tx.checkDeviceExists(user, device); err != nil {
		return err
	}
	if !strings.Contains(keyID, ":") {
		return fmt.Errorf("conduit: one-time key ID %q of %s %s is not <algorithm>:<id>", keyID, user, device)
	}
	quoted := jsonString(keyID)
	v, err := signing.CanonicalJSON(raw)
	if err != nil {
		return fmt.Errorf("conduit: one-time key %s of %s %s: %w", keyID, user, device, err)
	}
	changed, err := tx.put("onetimekeyid_onetimekeys", join([]byte(user), []byte(device), quoted), v)
	if changed {
		tx.oneTimeKeyChanged[user] = true
	}
	return err
}

// canonical encodes v as canonical JSON (sorted keys, as serde_json's BTreeMap-backed Value).
func canonical(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return signing.CanonicalJSON(b)
}
