package importer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/transition-matrix/transition-matrix/exportfmt"
)

// UnusableHash is the password hash given to users who have none in Synapse (SSO, appservice
// and other password-less accounts). Conduit treats an empty hash as "deactivated", so these
// users need a non-empty one that no password matches: it is not a PHC string (argon2 refuses
// to parse it) and does not start with "$2" (the bcrypt fallback of the Conduit patch ignores it).
const UnusableHash = "!transition-matrix:no-password"

// Password kinds of a UserPlan.
const (
	PasswordBcrypt      = "bcrypt"      // carried; works on Conduit only with the patch's bcrypt fallback
	PasswordArgon2      = "argon2"      // carried; Conduit checks it as is
	PasswordOther       = "other"       // carried; an unknown scheme no Conduit checks
	PasswordNone        = "none"        // no password in Synapse: UnusableHash
	PasswordDeactivated = "deactivated" // the empty hash, Conduit's mark of a deactivated account
)

// UserPlan is everything the import writes for one user, in Conduit's terms. PasswordHash,
// access tokens and the key backup are secrets: never print or log a plan.
type UserPlan struct {
	UserID       string
	PasswordHash string
	PasswordKind string
	// DisplayName and AvatarURL are "" when the user has none.
	DisplayName, AvatarURL string
	Devices                []DevicePlan
	// MasterKey, SelfSigningKey and UserSigningKey are the signed cross-signing keys (nil = none).
	MasterKey, SelfSigningKey, UserSigningKey json.RawMessage
	Backup                                    *BackupPlan
	// AccountData holds global (RoomID "") and per-room account data, sorted by room then type.
	AccountData []AccountDataPlan
	// Pushers are in the shape Conduit stores: the body of POST /pushers/set without "append".
	Pushers []PusherPlan
	// Notes say what of this user is not carried, and why.
	Notes []string
	// FallbackKeys is how many unused fallback keys Synapse holds for the user's devices (Conduit
	// has nowhere to put them).
	FallbackKeys int
	// SkippedTokens counts Synapse access tokens not carried (no device in the export, or expired).
	SkippedTokens int
	// ExpiringTokens counts carried tokens that had an expiry in Synapse (refresh-token
	// sessions); Conduit keeps them without one.
	ExpiringTokens int
	// SignInAgain are the user's exported devices whose session was an OAuth 2.0 session of MAS:
	// it cannot be carried, so they must sign in again.
	SignInAgain []string
}

// DevicePlan is one device: its metadata, keys, and (with Synapse's database) its session.
type DevicePlan struct {
	ID          string
	DisplayName *string
	LastSeenIP  *string
	LastSeenTS  *int64
	// Keys are the signed device keys (nil when the device uploaded none).
	Keys json.RawMessage
	// AccessToken is the device's Synapse token, "" when none is carried.
	AccessToken string
	// OneTimeKeys maps "<algorithm>:<key id>" to the signed key object.
	OneTimeKeys map[string]json.RawMessage
}

// BackupPlan is a key-backup version and its sessions, still encrypted.
type BackupPlan struct {
	Version string
	// Algorithm is {"algorithm": ..., "auth_data": ...}, the BackupAlgorithm Conduit stores.
	Algorithm json.RawMessage
	ETag      string
	Sessions  []BackupSessionPlan // sorted by room then session
}

// BackupSessionPlan is one backed-up megolm session.
type BackupSessionPlan struct {
	RoomID, SessionID string
	Data              json.RawMessage // KeyBackupData: first_message_index, forwarded_count, is_verified, session_data
}

// AccountDataPlan is one account data event; RoomID is "" for global account data.
type AccountDataPlan struct {
	RoomID, Type string
	Content      json.RawMessage
}

// PusherPlan is one pusher: its key and the JSON Conduit stores for it.
type PusherPlan struct {
	PushKey string
	JSON    json.RawMessage
}

// Sessions is what Synapse's database holds for one user and no API gives: access tokens and
// one-time keys by device ID. Conduit keeps one token per device.
type Sessions struct {
	// Tokens maps a device ID to its access token (the newest when Synapse holds several).
	Tokens map[string]Token
	// OneTimeKeys maps a device ID to "<algorithm>:<key id>" → signed key object.
	OneTimeKeys map[string]map[string]json.RawMessage
	// FallbackKeys counts the unused fallback keys by device ID.
	FallbackKeys map[string]int
	// Orphans counts tokens that belong to no device (Synapse allows that for some logins).
	Orphans int
	// Signatures are those other users made on this user's keys (bob's user-signing key on
	// alice's master key once he verified her): /keys/query shows them only to the signer.
	Signatures []KeySignature
	// PasswordHash, when set, replaces the export's hash: on a Synapse that hands its logins to
	// the Matrix Authentication Service, MAS holds the password, not Synapse.
	PasswordHash string
	// SignInAgain are devices of OAuth 2.0 sessions (MAS), whose tokens cannot be carried.
	SignInAgain []string
}

// KeySignature is one user's signature on another user's device or cross-signing key.
type KeySignature struct {
	Signer    string // the user who signed
	KeyID     string // "ed25519:<public key>" of the signer's key
	Target    string // the device ID or cross-signing public key signed
	Signature string
}

// Token is a Synapse access token.
type Token struct {
	Token string
	// ValidUntilMS is when Synapse would expire it (0 = never).
	ValidUntilMS int64
}

// planUser turns a verified user file (and the user's sessions from Synapse's database, nil
// without one) into what is written. nowMS decides which tokens have expired.
func planUser(u *exportfmt.UserFile, s *Sessions, nowMS int64) (*UserPlan, error) {
	p := &UserPlan{UserID: u.UID}
	hash := u.PasswordHash
	if s != nil && s.PasswordHash != "" {
		hash = &s.PasswordHash // MAS holds the password of a MAS deployment
	}
	switch {
	case u.Deactivated:
		p.PasswordKind = PasswordDeactivated
	case hash == nil || *hash == "":
		p.PasswordHash, p.PasswordKind = UnusableHash, PasswordNone
	default:
		p.PasswordHash = *hash
		switch {
		case strings.HasPrefix(p.PasswordHash, "$2"):
			p.PasswordKind = PasswordBcrypt
		case strings.HasPrefix(p.PasswordHash, "$argon2"):
			p.PasswordKind = PasswordArgon2
		default:
			p.PasswordKind = PasswordOther
		}
	}

	if len(u.Profile) > 0 && !bytes.Equal(u.Profile, []byte("null")) {
		var prof struct {
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		if err := json.Unmarshal(u.Profile, &prof); err != nil {
			return nil, fmt.Errorf("profile: %w", err)
		}
		if prof.DisplayName != nil {
			p.DisplayName = *prof.DisplayName
		}
		if prof.AvatarURL != nil {
			p.AvatarURL = *prof.AvatarURL
		}
	}

	listed := map[string]bool{}
	for i, raw := range u.Devices {
		var d struct {
			DeviceID    string  `json:"device_id"`
			DisplayName *string `json:"display_name"`
			LastSeenIP  *string `json:"last_seen_ip"`
			LastSeenTS  *int64  `json:"last_seen_ts"`
			Dehydrated  bool    `json:"dehydrated"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("device %d: %w", i, err)
		}
		if d.DeviceID == "" {
			return nil, fmt.Errorf("device %d has no device_id", i)
		}
		if listed[d.DeviceID] {
			return nil, fmt.Errorf("device %s listed twice", d.DeviceID)
		}
		listed[d.DeviceID] = true
		if d.Dehydrated {
			p.Notes = append(p.Notes, fmt.Sprintf("dehydrated device %s not carried (Conduit has no dehydrated devices)", d.DeviceID))
			continue
		}
		dev := DevicePlan{ID: d.DeviceID, DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, LastSeenTS: d.LastSeenTS}
		if k, ok := u.E2E.DeviceKeys[d.DeviceID]; ok && !isNull(k) {
			if err := checkObject(k); err != nil {
				return nil, fmt.Errorf("device keys of %s: %w", d.DeviceID, err)
			}
			dev.Keys = k
		}
		p.Devices = append(p.Devices, dev)
	}
	for _, id := range sortedKeys(u.E2E.DeviceKeys) {
		if !listed[id] {
			p.Notes = append(p.Notes, fmt.Sprintf("keys of device %s not carried: the device is not in the export", id))
		}
	}
	sort.Slice(p.Devices, func(i, j int) bool { return p.Devices[i].ID < p.Devices[j].ID })

	if u.Locked {
		p.Notes = append(p.Notes, "locked in Synapse: Conduit has no locked accounts, so no session is carried (lock or deactivate the account on Conduit)")
	}
	if u.ShadowBanned {
		p.Notes = append(p.Notes, "shadow-banned in Synapse: Conduit has no shadow bans")
	}
	if s != nil {
		p.SkippedTokens += s.Orphans
		byID := map[string]*DevicePlan{}
		for i := range p.Devices {
			byID[p.Devices[i].ID] = &p.Devices[i]
		}
		for _, dev := range sortedKeys(s.Tokens) {
			t := s.Tokens[dev]
			d := byID[dev]
			switch {
			case d == nil, t.Token == "", u.Locked:
				p.SkippedTokens++
			case t.ValidUntilMS != 0 && t.ValidUntilMS <= nowMS:
				p.SkippedTokens++
			default:
				d.AccessToken = t.Token
				if t.ValidUntilMS != 0 {
					p.ExpiringTokens++
				}
			}
		}
		for _, dev := range sortedKeys(s.OneTimeKeys) {
			if d := byID[dev]; d != nil {
				for id, k := range s.OneTimeKeys[dev] {
					if err := checkObject(k); err != nil {
						return nil, fmt.Errorf("one-time key %s of device %s: %w", id, dev, err)
					}
				}
				d.OneTimeKeys = s.OneTimeKeys[dev]
			}
		}
		for _, n := range s.FallbackKeys {
			p.FallbackKeys += n
		}
		for _, dev := range s.SignInAgain {
			if d := byID[dev]; d != nil && d.AccessToken == "" {
				p.SignInAgain = append(p.SignInAgain, dev)
				p.Notes = append(p.Notes, fmt.Sprintf("device %s had an OAuth 2.0 session of the Matrix Authentication Service, which cannot be carried: it must sign in again", dev))
			}
		}
		sort.Strings(p.SignInAgain)
	}

	for name, k := range map[string]json.RawMessage{"master": u.E2E.MasterKey, "self_signing": u.E2E.SelfSigningKey, "user_signing": u.E2E.UserSigningKey} {
		if isNull(k) {
			continue
		}
		if err := checkObject(k); err != nil {
			return nil, fmt.Errorf("%s key: %w", name, err)
		}
		switch name {
		case "master":
			p.MasterKey = k
		case "self_signing":
			p.SelfSigningKey = k
		default:
			p.UserSigningKey = k
		}
	}

	if s != nil && len(s.Signatures) > 0 {
		if err := p.addSignatures(s.Signatures); err != nil {
			return nil, err
		}
	}

	if kb := u.E2E.KeyBackup; kb != nil {
		if kb.Version == "" || kb.Algorithm == "" {
			return nil, fmt.Errorf("key backup: no version or algorithm")
		}
		auth := kb.AuthData
		if len(auth) == 0 {
			auth = json.RawMessage("{}")
		}
		alg, err := json.Marshal(struct {
			Algorithm string          `json:"algorithm"`
			AuthData  json.RawMessage `json:"auth_data"`
		}{kb.Algorithm, auth})
		if err != nil {
			return nil, fmt.Errorf("key backup: auth_data: %w", err)
		}
		b := &BackupPlan{Version: kb.Version, Algorithm: alg, ETag: kb.ETag}
		for _, room := range sortedKeys(kb.Rooms) {
			for _, sid := range sortedKeys(kb.Rooms[room]) {
				data := kb.Rooms[room][sid]
				if err := checkObject(data); err != nil {
					return nil, fmt.Errorf("key backup session %s in %s: %w", sid, room, err)
				}
				b.Sessions = append(b.Sessions, BackupSessionPlan{RoomID: room, SessionID: sid, Data: data})
			}
		}
		p.Backup = b
	}

	for _, typ := range sortedKeys(u.AccountData.Global) {
		c := u.AccountData.Global[typ]
		if err := checkObject(c); err != nil {
			return nil, fmt.Errorf("account data %s: %w", typ, err)
		}
		p.AccountData = append(p.AccountData, AccountDataPlan{Type: typ, Content: c})
	}
	for _, room := range sortedKeys(u.AccountData.Rooms) {
		for _, typ := range sortedKeys(u.AccountData.Rooms[room]) {
			c := u.AccountData.Rooms[room][typ]
			if err := checkObject(c); err != nil {
				return nil, fmt.Errorf("account data %s in %s: %w", typ, room, err)
			}
			p.AccountData = append(p.AccountData, AccountDataPlan{RoomID: room, Type: typ, Content: c})
		}
	}

	for i, raw := range u.Pushers {
		pp, err := conduitPusher(raw)
		if err != nil {
			return nil, fmt.Errorf("pusher %d: %w", i, err)
		}
		p.Pushers = append(p.Pushers, pp)
	}
	return p, nil
}

// conduitPusher turns an admin-API pusher into the set-pusher body Conduit stores (ruma's
// PusherInit fields flattened with PusherIds; "enabled" and "device_id" are Synapse's own).
func conduitPusher(raw json.RawMessage) (PusherPlan, error) {
	var p struct {
		Kind              string          `json:"kind"`
		AppID             string          `json:"app_id"`
		AppDisplayName    string          `json:"app_display_name"`
		DeviceDisplayName string          `json:"device_display_name"`
		ProfileTag        *string         `json:"profile_tag"`
		Pushkey           string          `json:"pushkey"`
		Lang              string          `json:"lang"`
		Data              json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return PusherPlan{}, err
	}
	if p.Pushkey == "" || p.AppID == "" || p.Kind == "" {
		return PusherPlan{}, fmt.Errorf("pushkey, app_id and kind are required")
	}
	if isNull(p.Data) {
		p.Data = json.RawMessage("{}")
	}
	if p.ProfileTag != nil && *p.ProfileTag == "" {
		p.ProfileTag = nil
	}
	out, err := json.Marshal(struct {
		Pushkey           string          `json:"pushkey"`
		Kind              string          `json:"kind"`
		AppID             string          `json:"app_id"`
		AppDisplayName    string          `json:"app_display_name"`
		DeviceDisplayName string          `json:"device_display_name"`
		ProfileTag        *string         `json:"profile_tag,omitempty"`
		Lang              string          `json:"lang"`
		Data              json.RawMessage `json:"data"`
	}{p.Pushkey, p.Kind, p.AppID, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang, p.Data})
	return PusherPlan{PushKey: p.Pushkey, JSON: out}, err
}

func isNull(b json.RawMessage) bool {
	return len(bytes.TrimSpace(b)) == 0 || bytes.Equal(bytes.TrimSpace(b), []byte("null"))
}

// checkObject accepts a JSON object and nothing else.
func checkObject(b json.RawMessage) error {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || t[0] != '{' || !json.Valid(t) {
		return fmt.Errorf("not a JSON object")
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// addSignatures merges other users' signatures into the keys they sign: a cross-signing key
// whose public key is the target, or the device with that ID. A signature on a key the export
// does not hold is named in Notes.
func (p *UserPlan) addSignatures(sigs []KeySignature) error {
	for _, sig := range sigs {
		var into *json.RawMessage
		for _, k := range []*json.RawMessage{&p.MasterKey, &p.SelfSigningKey, &p.UserSigningKey} {
			if *k != nil && crossSigningPublicKey(*k) == sig.Target {
				into = k
			}
		}
		for i := range p.Devices {
			if into == nil && p.Devices[i].ID == sig.Target && p.Devices[i].Keys != nil {
				into = &p.Devices[i].Keys
			}
		}
		if into == nil {
			p.Notes = append(p.Notes, fmt.Sprintf("signature of %s by %s not carried: no such key in the export", sig.Target, sig.Signer))
			continue
		}
		out, err := withSignature(*into, sig)
		if err != nil {
			return fmt.Errorf("signature of %s by %s: %w", sig.Target, sig.Signer, err)
		}
		*into = out
	}
	return nil
}

// crossSigningPublicKey returns the ed25519 public key of a cross-signing key object ("" if none).
func crossSigningPublicKey(k json.RawMessage) string {
	var v struct {
		Keys map[string]string `json:"keys"`
	}
	if json.Unmarshal(k, &v) != nil {
		return ""
	}
	for id, pub := range v.Keys {
		if strings.HasPrefix(id, "ed25519:") {
			return pub
		}
	}
	return ""
}

// withSignature returns the key object k with sig added under signatures[signer][key ID].
func withSignature(k json.RawMessage, sig KeySignature) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(k, &obj); err != nil {
		return nil, err
	}
	sigs := map[string]map[string]string{}
	if raw, ok := obj["signatures"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &sigs); err != nil {
			return nil, fmt.Errorf("signatures: %w", err)
		}
	}
	if sigs[sig.Signer] == nil {
		sigs[sig.Signer] = map[string]string{}
	}
	sigs[sig.Signer][sig.KeyID] = sig.Signature
	raw, err := json.Marshal(sigs)
	if err != nil {
		return nil, err
	}
	obj["signatures"] = raw
	return json.Marshal(obj)
}
