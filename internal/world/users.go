package world

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"github.com/transition-matrix/transition-matrix/signing"
)

const upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

// HostileLocalparts are the localparts Options.HostileIDs adds: path tricks, a backslash, a NUL-free
// mix of scripts, upper case and a 255-byte localpart.
var HostileLocalparts = []string{
	"..", "../../../../tmp/escape", "/etc/passwd", "a\\..\\b", ".hidden", "Ünïcødé-用户-😀", "MiXeD.CaSe",
	strings.Repeat("x", 255),
}

// hostileRoomParts are put into the IDs of the first extra rooms under Options.HostileIDs.
var hostileRoomParts = []string{"../..", "/abs/", "a\\b", "ü/..", strings.Repeat("r", 200)}

type userSpec struct {
	lp, name                 string
	admin, deactivated, nopw bool
	userType                 string
	avatar                   bool
}

// makeUsers creates the local accounts (with passwords and devices) and the remote users' profiles.
func (g *gen) makeUsers() error {
	specs := []userSpec{
		{lp: "admin", name: "Server Admin", admin: true},
		{lp: "alice", name: "Alice Liddell", avatar: true},
		{lp: "bob", name: "Bob Builder", avatar: true},
		{lp: "carol", name: "Carol Danvers"},
		{lp: "dave", name: "Dave Departed", deactivated: true},
		{lp: "erin", name: "Erin Sso", nopw: true, avatar: true},
		{lp: "helper-bot", name: "Helper Bot", userType: "bot"},
	}
	for i := range g.opts.Users {
		specs = append(specs, userSpec{lp: fmt.Sprintf("user%03d", i+1), name: fmt.Sprintf("User %d", i+1), avatar: i%2 == 0})
	}
	if g.opts.HostileIDs {
		for i, lp := range HostileLocalparts {
			specs = append(specs, userSpec{lp: lp, name: fmt.Sprintf("Hostile %d", i+1), nopw: true}) // bcrypt takes 72 bytes at most
		}
	}
	base := g.opts.BaseTime.UnixMilli()
	for i, s := range specs {
		u := &User{
			ID:          g.local(s.lp),
			Localpart:   s.lp,
			Admin:       s.admin,
			Deactivated: s.deactivated,
			UserType:    s.userType,
			CreationTS:  (base/1000 - int64(len(specs)-i)*3600) * 1000,
			Profile:     Profile{DisplayName: s.name},
			AccountData: AccountData{Global: map[string]json.RawMessage{}, Rooms: map[string]map[string]json.RawMessage{}},
			Tags:        map[string]map[string]json.RawMessage{},
		}
		if s.avatar && !s.deactivated {
			u.Profile.AvatarURL = "mxc://" + g.opts.ServerName + "/" + randString(g.rng, 24, letters)
		}
		if !s.nopw && !s.deactivated {
			u.Password = "pw-" + s.lp + "-" + randString(g.rng, 8, alnum)
			salt := g.seed32()[:16]
			h, err := bcryptHash(u.Password, g.opts.PasswordCost, salt)
			if err != nil {
				return err
			}
			u.PasswordHash = h
		}
		if s.nopw {
			u.ExternalIDs = []ExternalID{{AuthProvider: "oidc-example", ExternalID: "sub-" + randString(g.rng, 12, alnum)}}
		}
		if !s.deactivated {
			g.active[u.ID] = true
			n := 1 + g.rng.IntN(2)
			if s.lp == "alice" {
				n = 2
			}
			for k := range n {
				u.Devices = append(u.Devices, g.newDevice(u, k))
			}
		}
		g.profiles[u.ID] = u.Profile
		g.byName[s.lp] = u
		if i >= 7 && !s.nopw { // hostile users stay out of rooms: their IDs are too long for state keys
			g.extras = append(g.extras, u)
		}
		g.w.Users = append(g.w.Users, u)
	}
	for _, lp := range []string{"rita", "rob", "ruth"} {
		id := "@" + lp + ":" + g.opts.RemoteServerName
		g.remote = append(g.remote, id)
		g.profiles[id] = Profile{DisplayName: strings.ToUpper(lp[:1]) + lp[1:] + " Remote"}
	}
	g.w.RemoteUsers = g.remote
	return nil
}

func (g *gen) newDevice(u *User, k int) *Device {
	d := &Device{
		ID:                randString(g.rng, 10, upper),
		LastSeenIP:        fmt.Sprintf("10.0.%d.%d", g.rng.IntN(256), 1+g.rng.IntN(254)),
		LastSeenTS:        g.opts.BaseTime.UnixMilli() - int64(g.rng.IntN(86400000)),
		LastSeenUserAgent: []string{"Element/1.11 (Linux)", "Element Android/1.6", "curl/8.0", "Fractal/5"}[g.rng.IntN(4)],
		Ed25519:           ed25519.NewKeyFromSeed(g.seed32()),
	}
	if k == 0 {
		d.DisplayName = u.Profile.DisplayName + "'s laptop"
	}
	d.AccessToken = accessToken(u.Localpart, randString(g.rng, 20, letters))
	priv, _ := ecdh.X25519().NewPrivateKey(g.seed32())
	d.Curve25519 = base64.RawStdEncoding.EncodeToString(priv.PublicKey().Bytes())
	return d
}

// accessToken formats a Synapse-style "syt_<b64 localpart>_<random>_<crc>" token.
func accessToken(localpart, random string) string {
	payload := "syt_" + base64.RawURLEncoding.EncodeToString([]byte(localpart)) + "_" + random
	crc := crc32.ChecksumIEEE([]byte(payload))
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [6]byte
	for i := 5; i >= 0; i-- {
		b[i] = digits[crc%62]
		crc /= 62
	}
	return payload + "_" + string(b[:])
}

func (g *gen) deviceIDOf(userID string) string {
	if u := g.byName[localpartOf(userID)]; u != nil && u.ID == userID && len(u.Devices) > 0 {
		return u.Devices[0].ID
	}
	return "REMOTE" + strings.ToUpper(localpartOf(userID))
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func sign(userID, keyID string, priv ed25519.PrivateKey, obj []byte) ([]byte, error) {
	if strings.ContainsAny(userID, `\"`) {
		// gomatrixserverlib's SignJSON puts the signer's name into the JSON unescaped, which
		// breaks the object for a name holding a backslash or a quote.
		return signing.SignJSON(userID, signing.Key{ID: signing.KeyID(keyID), Seed: priv.Seed()}, obj)
	}
	return gmsl.SignJSON(userID, gmsl.KeyID(keyID), priv, obj)
}

// userData fills what refers to rooms and events: account data, tags, E2EE
// keys and backups, pushers, threepids and push rules.
func (g *gen) userData() error {
	crossSigners := map[string]bool{"alice": true, "bob": true, "carol": true}
	for _, u := range g.w.Users {
		u.PushRules = DefaultPushRules(u.ID)
		if u.Deactivated {
			continue
		}
		if crossSigners[u.Localpart] {
			if err := g.crossSigning(u); err != nil {
				return err
			}
		}
		for k, d := range u.Devices {
			if k > 0 && g.rng.IntN(2) == 0 {
				continue // a device that never uploaded keys
			}
			if err := g.deviceKeys(u, d, k == 0); err != nil {
				return err
			}
		}
		g.accountData(u)
		if u.Localpart == "alice" || u.Localpart == "bob" {
			u.Pushers = []Pusher{{
				AppDisplayName: "Example Push", AppID: "org.example.app.android",
				Data:              PusherData{URL: "https://push.example.org/_matrix/push/v1/notify", Format: "event_id_only"},
				DeviceDisplayName: u.Devices[0].DisplayName, Kind: "http", Lang: "en", ProfileTag: randString(g.rng, 6, alnum),
				Pushkey: strings.ToUpper(u.Localpart) + "-PUSHKEY-" + randString(g.rng, 8, upper),
			}}
		}
		if u.Localpart != "helper-bot" {
			ts := u.CreationTS + 60000
			u.Threepids = []Threepid{{Medium: "email", Address: u.Localpart + "@example.org", AddedAt: ts, ValidatedAt: ts}}
			if u.Localpart == "bob" {
				u.Threepids = append(u.Threepids, Threepid{Medium: "msisdn", Address: "447700900123", AddedAt: ts + 1000, ValidatedAt: ts + 1000})
			}
		}
		if u.CrossSigning != nil {
			if err := g.keyBackup(u); err != nil {
				return err
			}
		}
	}
	if alice := g.byName["alice"]; alice != nil {
		rules := DefaultPushRules(alice.ID)
		var doc map[string]map[string][]json.RawMessage
		_ = json.Unmarshal(rules, &doc)
		doc["global"]["content"] = append(doc["global"]["content"], mustJSON(map[string]any{
			"rule_id": "pizza", "pattern": "pizza", "default": false, "enabled": true,
			"actions": []any{"notify", map[string]any{"set_tweak": "highlight"}},
		}))
		alice.PushRules = mustJSON(doc)
	}
	return nil
}

func (g *gen) crossSigning(u *User) error {
	cs := &CrossSigning{
		MasterPriv:      ed25519.NewKeyFromSeed(g.seed32()),
		SelfSigningPriv: ed25519.NewKeyFromSeed(g.seed32()),
		UserSigningPriv: ed25519.NewKeyFromSeed(g.seed32()),
	}
	cs.MasterPublic = b64(cs.MasterPriv.Public().(ed25519.PublicKey))
	cs.SelfSigningPublic = b64(cs.SelfSigningPriv.Public().(ed25519.PublicKey))
	cs.UserSigningPublicKey = b64(cs.UserSigningPriv.Public().(ed25519.PublicKey))
	key := func(usage, pub string) []byte {
		return mustJSON(map[string]any{"user_id": u.ID, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + pub: pub}})
	}
	var err error
	dev := u.Devices[0]
	if cs.Master, err = sign(u.ID, "ed25519:"+dev.ID, dev.Ed25519, key("master", cs.MasterPublic)); err != nil {
		return err
	}
	if cs.SelfSigning, err = sign(u.ID, "ed25519:"+cs.MasterPublic, cs.MasterPriv, key("self_signing", cs.SelfSigningPublic)); err != nil {
		return err
	}
	if cs.UserSigning, err = sign(u.ID, "ed25519:"+cs.MasterPublic, cs.MasterPriv, key("user_signing", cs.UserSigningPublicKey)); err != nil {
		return err
	}
	u.CrossSigning = cs
	return nil
}

// deviceKeys signs the device's identity keys with the device key (and the
// self-signing key, when the user has cross-signing) and, for the main
// device, three one-time keys.
func (g *gen) deviceKeys(u *User, d *Device, withOTKs bool) error {
	edPub := b64(d.Ed25519.Public().(ed25519.PublicKey))
	obj := mustJSON(map[string]any{
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"device_id":  d.ID,
		"keys":       map[string]string{"curve25519:" + d.ID: d.Curve25519, "ed25519:" + d.ID: edPub},
		"user_id":    u.ID,
	})
	signed, err := sign(u.ID, "ed25519:"+d.ID, d.Ed25519, obj)
	if err != nil {
		return err
	}
	if cs := u.CrossSigning; cs != nil {
		if signed, err = sign(u.ID, "ed25519:"+cs.SelfSigningPublic, cs.SelfSigningPriv, signed); err != nil {
			return err
		}
	}
	d.Keys = signed
	if withOTKs {
		d.OneTimeKeys = map[string]json.RawMessage{}
		for _, id := range []string{"AAAAAQ", "AAAAAg", "AAAAAw"} {
			priv, _ := ecdh.X25519().NewPrivateKey(g.seed32())
			k, err := sign(u.ID, "ed25519:"+d.ID, d.Ed25519, mustJSON(map[string]string{"key": b64(priv.PublicKey().Bytes())}))
			if err != nil {
				return err
			}
			d.OneTimeKeys["signed_curve25519:"+id] = k
		}
	}
	return nil
}

func (g *gen) encrypted(n int) map[string]string {
	return map[string]string{"iv": randString(g.rng, 22, alnum), "ciphertext": randString(g.rng, n, alnum+"+/"), "mac": randString(g.rng, 43, alnum+"+/")}
}

func (g *gen) accountData(u *User) {
	ad := u.AccountData
	ad.Global["org.example.custom"] = mustJSON(map[string]any{"theme": "dark", "n": 42, "nested": map[string]any{"list": []int{1, 2, 3}}})
	alice, bob := g.local("alice"), g.local("bob")
	switch u.ID {
	case alice:
		ad.Global["m.direct"] = mustJSON(map[string][]string{bob: {g.dm.room.ID}})
	case bob:
		ad.Global["m.direct"] = mustJSON(map[string][]string{alice: {g.dm.room.ID}})
	case g.local("carol"):
		ad.Global["m.ignored_user_list"] = mustJSON(map[string]any{"ignored_users": map[string]any{g.remote[1]: map[string]any{}}})
	}
	if u.CrossSigning != nil {
		kid := randString(g.rng, 32, alnum)
		ad.Global["m.secret_storage.default_key"] = mustJSON(map[string]string{"key": kid})
		ad.Global["m.secret_storage.key."+kid] = mustJSON(map[string]any{
			"algorithm": "m.secret_storage.v1.aes-hmac-sha2", "iv": randString(g.rng, 22, alnum), "mac": randString(g.rng, 43, alnum),
			"passphrase": map[string]any{"algorithm": "m.pbkdf2", "iterations": 500000, "salt": randString(g.rng, 32, alnum)},
		})
		for _, t := range []string{"m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing", "m.megolm_backup.v1"} {
			ad.Global[t] = mustJSON(map[string]any{"encrypted": map[string]any{kid: g.encrypted(64)}})
		}
	}
	for _, p := range g.plans {
		if p.members[u.ID] != "join" {
			continue
		}
		r := p.room
		rooms := ad.Rooms[r.ID]
		if rooms == nil {
			rooms = map[string]json.RawMessage{}
			ad.Rooms[r.ID] = rooms
		}
		rooms["m.fully_read"] = mustJSON(map[string]string{"event_id": r.Latest().ID})
		if u.ID == alice && r == g.dm.room {
			rooms["org.example.room_custom"] = mustJSON(map[string]string{"pinned_note": "remember the milk"})
		}
	}
	tag := func(room *Room, name string, content any) {
		if u.Tags[room.ID] == nil {
			u.Tags[room.ID] = map[string]json.RawMessage{}
		}
		u.Tags[room.ID][name] = mustJSON(content)
	}
	switch u.ID {
	case alice:
		tag(g.dm.room, "m.favourite", map[string]any{"order": 0.25})
		tag(g.dm.room, "u.work", map[string]any{})
		tag(g.lobby.room, "m.lowpriority", map[string]any{})
	case bob:
		tag(g.dm.room, "m.favourite", map[string]any{"order": 0.5})
	case g.local("carol"):
		tag(g.secret.room, "u.secret", map[string]any{})
	}
}

func (g *gen) keyBackup(u *User) error {
	priv, _ := ecdh.X25519().NewPrivateKey(g.seed32())
	auth := mustJSON(map[string]any{"public_key": b64(priv.PublicKey().Bytes())})
	dev, cs := u.Devices[0], u.CrossSigning
	auth, err := sign(u.ID, "ed25519:"+dev.ID, dev.Ed25519, auth)
	if err != nil {
		return err
	}
	if auth, err = sign(u.ID, "ed25519:"+cs.MasterPublic, cs.MasterPriv, auth); err != nil {
		return err
	}
	kb := &KeyBackup{Version: "1", Algorithm: "m.megolm_backup.v1.curve25519-aes-sha2", AuthData: auth, Rooms: map[string]map[string]BackupSession{}}
	for _, p := range g.plans {
		if _, member := p.members[u.ID]; !member {
			continue
		}
		sessions := p.sessions
		if len(sessions) == 0 && p == g.dm {
			sessions = []string{randString(g.rng, 43, alnum+"+/")}
		}
		for _, s := range sessions {
			if kb.Rooms[p.room.ID] == nil {
				kb.Rooms[p.room.ID] = map[string]BackupSession{}
			}
			kb.Rooms[p.room.ID][s] = BackupSession{
				FirstMessageIndex: g.rng.IntN(3), ForwardedCount: g.rng.IntN(2), IsVerified: g.rng.IntN(2) == 0,
				SessionData: BackupSessionData{
					Ephemeral:  b64(g.seed32()),
					Ciphertext: randString(g.rng, 160, alnum+"+/"),
					Mac:        randString(g.rng, 11, alnum+"+/"),
				},
			}
		}
	}
	kb.ETag = fmt.Sprint(kb.Count())
	u.KeyBackup = kb
	return nil
}
