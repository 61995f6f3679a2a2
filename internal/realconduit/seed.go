//go:build conduit

package realconduit

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
	"github.com/transition-matrix/transition-matrix/signing"
)

// SourceOf is the Source for a synapsetest Synapse.
func SourceOf(s *synapsetest.Server) Source {
	return Source{ServerName: s.ServerName, URL: s.BaseURL, ConfigPath: s.ConfigPath, AdminToken: s.AdminToken,
		MediaStorePath: s.MediaStorePath, DatabasePath: s.DatabasePath, DatabaseDSN: s.DatabaseDSN}
}

// SeedOptions size what Seed makes.
type SeedOptions struct {
	// LargeRoomMessages is the number of messages in the largest room (default 300).
	LargeRoomMessages int
}

// Seeded is what Seed made: the users (with passwords and tokens) and the rooms.
type Seeded struct {
	Users     []User
	LargeRoom string
	Rooms     []string
}

// Seed fills a real Synapse through its own APIs with what a migration must carry: three users
// with passwords, device keys, one-time keys and cross-signing keys, a key backup with sessions,
// push rules, account data, tags, a pusher, an avatar and an image, and three rooms (a large one,
// one with joined-only history that a user joins late, one with a rotated name and topic).
func Seed(ctx context.Context, s *synapsetest.Server, opts SeedOptions) (*Seeded, error) {
	if opts.LargeRoomMessages == 0 {
		opts.LargeRoomMessages = 300
	}
	c := NewClient(s.BaseURL)
	out := &Seeded{}
	var regs []synapsetest.Registered
	for _, name := range []string{"alice", "bob", "carol"} {
		r, err := s.Register(ctx, name, name+"-pw-"+randomHex(4)+"-ü", false) // non-ASCII: Synapse NFKC-normalises
		if err != nil {
			return nil, err
		}
		regs = append(regs, r)
		out.Users = append(out.Users, User{ID: r.UserID, Password: r.Password, AccessToken: r.AccessToken, DeviceID: r.DeviceID})
	}
	alice, bob, carol := regs[0], regs[1], regs[2]

	// E2EE: device keys and one-time keys for every device, cross-signing and a backup for alice.
	for _, r := range regs {
		if err := uploadDeviceKeys(ctx, c, r); err != nil {
			return nil, err
		}
	}
	if err := uploadCrossSigning(ctx, c, alice); err != nil {
		return nil, err
	}
	if err := makeBackup(ctx, c, alice); err != nil {
		return nil, err
	}

	// Push rules, account data, pusher, avatar.
	steps := []struct {
		method, path, tok string
		body              any
	}{
		{"PUT", "/_matrix/client/v3/pushrules/global/content/tm_cutover", alice.AccessToken, map[string]any{"pattern": "cutover", "actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}}},
		{"PUT", "/_matrix/client/v3/pushrules/global/override/.m.rule.suppress_notices/enabled", bob.AccessToken, map[string]any{"enabled": false}},
		{"PUT", "/_matrix/client/v3/user/" + Esc(alice.UserID) + "/account_data/org.example.settings", alice.AccessToken, map[string]any{"theme": "dark", "n": 3}},
		{"PUT", "/_matrix/client/v3/user/" + Esc(bob.UserID) + "/account_data/m.ignored_user_list", bob.AccessToken, map[string]any{"ignored_users": map[string]any{}}},
		{"POST", "/_matrix/client/v3/pushers/set", bob.AccessToken, map[string]any{"kind": "http", "app_id": "org.example.app", "pushkey": "bob-pushkey-1",
			"app_display_name": "Example", "device_display_name": "bob's phone", "lang": "en", "data": map[string]any{"url": "https://push.invalid/_matrix/push/v1/notify", "format": "event_id_only"}}},
	}
	for _, st := range steps {
		if err := c.Do(ctx, st.method, st.path, st.tok, st.body, nil); err != nil {
			return nil, err
		}
	}
	avatar, err := upload(ctx, c, alice.AccessToken, "avatar.png", "image/png", pngBytes())
	if err != nil {
		return nil, err
	}
	if err := c.Do(ctx, "PUT", "/_matrix/client/v3/profile/"+Esc(alice.UserID)+"/avatar_url", alice.AccessToken, map[string]any{"avatar_url": avatar}, nil); err != nil {
		return nil, err
	}
	photo := make([]byte, 70_000)
	_, _ = rand.Read(photo)
	image, err := upload(ctx, c, bob.AccessToken, "photo.bin", "application/octet-stream", photo)
	if err != nil {
		return nil, err
	}

	// Rooms.
	large, err := createRoom(ctx, c, alice.AccessToken, map[string]any{"name": "Large", "preset": "private_chat", "invite": []string{bob.UserID, carol.UserID}})
	if err != nil {
		return nil, err
	}
	late, err := createRoom(ctx, c, bob.AccessToken, map[string]any{"name": "Joined only", "preset": "private_chat", "invite": []string{alice.UserID, carol.UserID},
		"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}}}})
	if err != nil {
		return nil, err
	}
	small, err := createRoom(ctx, c, carol.AccessToken, map[string]any{"name": "Small", "preset": "public_chat"})
	if err != nil {
		return nil, err
	}
	out.LargeRoom, out.Rooms = large, []string{large, late, small}
	for _, j := range []struct {
		tok, room string
	}{{bob.AccessToken, large}, {carol.AccessToken, large}, {alice.AccessToken, late}, {alice.AccessToken, small}, {bob.AccessToken, small}} {
		if err := c.Do(ctx, "POST", "/_matrix/client/v3/join/"+Esc(j.room), j.tok, map[string]any{}, nil); err != nil {
			return nil, err
		}
	}
	senders := []synapsetest.Registered{alice, bob, carol}
	for i := 0; i < opts.LargeRoomMessages; i++ {
		body := "message " + strconv.Itoa(i)
		if i%50 == 7 {
			body += " about the cutover"
		}
		if err := send(ctx, c, senders[i%3].AccessToken, large, "m.room.message", map[string]any{"msgtype": "m.text", "body": body}); err != nil {
			return nil, err
		}
	}
	if err := send(ctx, c, bob.AccessToken, large, "m.room.message", map[string]any{"msgtype": "m.file", "body": "photo.bin", "url": image}); err != nil {
		return nil, err
	}
	for i := 0; i < 20; i++ {
		if err := send(ctx, c, senders[(i+1)%2].AccessToken, late, "m.room.message", map[string]any{"msgtype": "m.text", "body": "before carol " + strconv.Itoa(i)}); err != nil {
			return nil, err
		}
	}
	if err := c.Do(ctx, "POST", "/_matrix/client/v3/join/"+Esc(late), carol.AccessToken, map[string]any{}, nil); err != nil {
		return nil, err
	}
	for i := 0; i < 10; i++ {
		if err := send(ctx, c, senders[i%3].AccessToken, late, "m.room.message", map[string]any{"msgtype": "m.text", "body": "after carol " + strconv.Itoa(i)}); err != nil {
			return nil, err
		}
	}
	for i, topic := range []string{"first topic", "second topic"} {
		if err := c.Do(ctx, "PUT", "/_matrix/client/v3/rooms/"+Esc(small)+"/state/m.room.topic/", carol.AccessToken, map[string]any{"topic": topic}, nil); err != nil {
			return nil, err
		}
		if err := send(ctx, c, senders[i].AccessToken, small, "m.room.message", map[string]any{"msgtype": "m.text", "body": "hi " + topic}); err != nil {
			return nil, err
		}
	}
	// Tags and room account data.
	if err := c.Do(ctx, "PUT", "/_matrix/client/v3/user/"+Esc(alice.UserID)+"/rooms/"+Esc(large)+"/tags/m.favourite", alice.AccessToken, map[string]any{"order": 0.25}, nil); err != nil {
		return nil, err
	}
	if err := c.Do(ctx, "PUT", "/_matrix/client/v3/user/"+Esc(bob.UserID)+"/rooms/"+Esc(small)+"/tags/u.work", bob.AccessToken, map[string]any{}, nil); err != nil {
		return nil, err
	}
	if err := c.Do(ctx, "PUT", "/_matrix/client/v3/user/"+Esc(carol.UserID)+"/rooms/"+Esc(small)+"/account_data/org.example.room", carol.AccessToken, map[string]any{"pinned": true}, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// SeedRoomVersion is the version of the rooms Seed creates: Synapse 1.163's default is 12, which
// the export does not take yet (branch v12).
const SeedRoomVersion = "11"

func createRoom(ctx context.Context, c *Client, tok string, body map[string]any) (string, error) {
	if _, ok := body["room_version"]; !ok {
		body["room_version"] = SeedRoomVersion
	}
	var r struct {
		RoomID string `json:"room_id"`
	}
	err := c.Do(ctx, "POST", "/_matrix/client/v3/createRoom", tok, body, &r)
	return r.RoomID, err
}

func send(ctx context.Context, c *Client, tok, room, typ string, content any) error {
	return c.Do(ctx, "PUT", "/_matrix/client/v3/rooms/"+Esc(room)+"/send/"+Esc(typ)+"/"+randomHex(8), tok, content, nil)
}

func upload(ctx context.Context, c *Client, tok, name, contentType string, data []byte) (string, error) {
	req := "/_matrix/media/v3/upload?filename=" + url.QueryEscape(name)
	raw, err := c.RawType(ctx, "POST", req, tok, contentType, data)
	if err != nil {
		return "", err
	}
	var r struct {
		ContentURI string `json:"content_uri"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.ContentURI == "" {
		return "", fmt.Errorf("upload %s: no content_uri in %s", name, truncate(string(raw), 200))
	}
	return r.ContentURI, nil
}

// uploadDeviceKeys uploads signed device keys and five signed one-time keys for r's device.
func uploadDeviceKeys(ctx context.Context, c *Client, r synapsetest.Registered) error {
	key := newEd25519(r.DeviceID)
	curve := newEd25519("unused") // stands in for a curve25519 key: the server stores it as given
	dk := map[string]any{"user_id": r.UserID, "device_id": r.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]string{"curve25519:" + r.DeviceID: signing.EncodeBase64(curve.PublicKey()), "ed25519:" + r.DeviceID: signing.EncodeBase64(key.PublicKey())}}
	signed, err := signObject(r.UserID, key, dk)
	if err != nil {
		return err
	}
	otks := map[string]any{}
	for i := 0; i < 5; i++ {
		k := newEd25519("x")
		obj, err := signObject(r.UserID, key, map[string]any{"key": signing.EncodeBase64(k.PublicKey())})
		if err != nil {
			return err
		}
		otks[fmt.Sprintf("signed_curve25519:AAAA%02d", i)] = obj
	}
	return c.Do(ctx, "POST", "/_matrix/client/v3/keys/upload", r.AccessToken, map[string]any{"device_keys": signed, "one_time_keys": otks}, nil)
}

// uploadCrossSigning uploads master, self-signing and user-signing keys (user-interactive auth
// with the password).
func uploadCrossSigning(ctx context.Context, c *Client, r synapsetest.Registered) error {
	master, self, userKey := newEd25519("m"), newEd25519("s"), newEd25519("u")
	pub := func(k signing.Key) string { return signing.EncodeBase64(k.PublicKey()) }
	mk := map[string]any{"user_id": r.UserID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:" + pub(master): pub(master)}}
	ssk, err := signObject(r.UserID, withID(master, "ed25519:"+pub(master)), map[string]any{"user_id": r.UserID, "usage": []string{"self_signing"}, "keys": map[string]string{"ed25519:" + pub(self): pub(self)}})
	if err != nil {
		return err
	}
	usk, err := signObject(r.UserID, withID(master, "ed25519:"+pub(master)), map[string]any{"user_id": r.UserID, "usage": []string{"user_signing"}, "keys": map[string]string{"ed25519:" + pub(userKey): pub(userKey)}})
	if err != nil {
		return err
	}
	body := map[string]any{"master_key": mk, "self_signing_key": ssk, "user_signing_key": usk,
		"auth": map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": r.UserID}, "password": r.Password}}
	return c.Do(ctx, "POST", "/_matrix/client/v3/keys/device_signing/upload", r.AccessToken, body, nil)
}

// makeBackup creates a key backup version and puts two sessions in it.
func makeBackup(ctx context.Context, c *Client, r synapsetest.Registered) error {
	var v struct {
		Version string `json:"version"`
	}
	backupKey := newEd25519("b")
	if err := c.Do(ctx, "POST", "/_matrix/client/v3/room_keys/version", r.AccessToken, map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
		"auth_data": map[string]any{"public_key": signing.EncodeBase64(backupKey.PublicKey())}}, &v); err != nil {
		return err
	}
	session := func(i int) map[string]any {
		return map[string]any{"first_message_index": i, "forwarded_count": 0, "is_verified": i == 0,
			"session_data": map[string]any{"ephemeral": "eph" + strconv.Itoa(i), "ciphertext": "ct-" + randomHex(16), "mac": "mac" + strconv.Itoa(i)}}
	}
	body := map[string]any{"rooms": map[string]any{"!backup:" + "example": map[string]any{"sessions": map[string]any{"sessA": session(0), "sessB": session(3)}}}}
	return c.Do(ctx, "PUT", "/_matrix/client/v3/room_keys/keys?version="+url.QueryEscape(v.Version), r.AccessToken, body, nil)
}

func newEd25519(version string) signing.Key {
	seed := make([]byte, 32)
	_, _ = rand.Read(seed)
	return signing.Key{ID: signing.KeyID("ed25519:" + version), Seed: seed}
}

func withID(k signing.Key, id string) signing.Key { k.ID = signing.KeyID(id); return k }

func signObject(entity string, key signing.Key, obj map[string]any) (map[string]any, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	signed, err := signing.SignJSON(entity, key, b)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	err = json.Unmarshal(signed, &out)
	return out, err
}

// pngBytes is a valid 1×1 PNG.
func pngBytes() []byte {
	return []byte{0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4,
		0x89, 0, 0, 0, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xff, 0xff, 0x3f, 0, 5, 0xfe, 2, 0xfe, 0xa7, 0x35, 0x81, 0x84, 0, 0, 0, 0, 0x49,
		0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82}
}
