package importer

import (
	"encoding/json"
	"fmt"

	"github.com/transition-matrix/transition-matrix/exportfmt"
)

// synthUser builds a user file the way shim export writes one, without a world: devices with
// keys, cross-signing keys, a key backup of sessions sessions, account data and a pusher.
// Device n's access token in the synthetic Synapse database is synthToken(uid, n).
func synthUser(server string, i, devices, sessions int) *exportfmt.UserFile {
	uid := fmt.Sprintf("@user%05d:%s", i, server)
	hash := fmt.Sprintf("$2b$04$%053d", i)
	u := &exportfmt.UserFile{
		UID: uid, CreationTS: 1700000000000 + int64(i), PasswordHash: &hash,
		Profile:     raw(map[string]any{"displayname": fmt.Sprintf("User %d", i), "avatar_url": fmt.Sprintf("mxc://%s/avatar%d", server, i)}),
		Threepids:   nil,
		ExternalIDs: nil,
		AccountData: exportfmt.AccountData{
			Global: map[string]json.RawMessage{
				"m.push_rules":      raw(map[string]any{"global": map[string]any{"override": []any{}, "content": []any{}, "room": []any{}, "sender": []any{}, "underride": []any{}}}),
				"im.vector.setting": raw(map[string]any{"n": i}),
			},
			Rooms: map[string]map[string]json.RawMessage{
				fmt.Sprintf("!room%d:%s", i%7, server): {"m.tag": raw(map[string]any{"tags": map[string]any{"m.favourite": map[string]any{"order": 0.5}}})},
			},
		},
		Pushers: []json.RawMessage{raw(map[string]any{
			"app_display_name": "App", "app_id": "com.example.app", "data": map[string]any{"url": "https://push.example/_matrix/push/v1/notify"},
			"device_display_name": "Phone", "kind": "http", "lang": "en", "profile_tag": "tag", "pushkey": fmt.Sprintf("pk%d", i),
		})},
		JoinedRooms: []string{},
		E2E:         exportfmt.E2E{DeviceKeys: map[string]json.RawMessage{}},
		ClientAPIAs: "login_as",
	}
	for d := 0; d < devices; d++ {
		dev := fmt.Sprintf("DEV%05d%02d", i, d)
		u.Devices = append(u.Devices, raw(map[string]any{
			"device_id": dev, "display_name": fmt.Sprintf("Device %d", d), "last_seen_ip": "10.0.0.1",
			"last_seen_ts": 1700000000000 + int64(d), "last_seen_user_agent": "synth", "user_id": uid,
		}))
		u.E2E.DeviceKeys[dev] = raw(map[string]any{
			"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"}, "device_id": dev, "user_id": uid,
			"keys":       map[string]string{"curve25519:" + dev: fmt.Sprintf("c%042d", i*100+d), "ed25519:" + dev: fmt.Sprintf("e%042d", i*100+d)},
			"signatures": map[string]any{uid: map[string]string{"ed25519:" + dev: fmt.Sprintf("s%085d", i*100+d)}},
		})
	}
	cs := func(usage string) json.RawMessage {
		return raw(map[string]any{"user_id": uid, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + fmt.Sprintf("%s%038d", usage[:2], i): fmt.Sprintf("%s%041d", usage[:2], i)}})
	}
	u.E2E.MasterKey, u.E2E.SelfSigningKey, u.E2E.UserSigningKey = cs("master"), cs("self_signing"), cs("user_signing")
	if sessions > 0 {
		kb := &exportfmt.KeyBackup{Version: fmt.Sprint(1 + i%3), Algorithm: "m.megolm_backup.v1.curve25519-aes-sha2",
			AuthData: raw(map[string]any{"public_key": fmt.Sprintf("pub%d", i)}), ETag: "3", Count: int64(sessions),
			Rooms: map[string]map[string]json.RawMessage{}}
		for s := 0; s < sessions; s++ {
			room := fmt.Sprintf("!room%d:%s", s%3, server)
			if kb.Rooms[room] == nil {
				kb.Rooms[room] = map[string]json.RawMessage{}
			}
			kb.Rooms[room][fmt.Sprintf("session%06d", s)] = raw(map[string]any{
				"first_message_index": s, "forwarded_count": 0, "is_verified": true,
				"session_data": map[string]string{"ephemeral": fmt.Sprintf("eph%d", s), "ciphertext": fmt.Sprintf("ct%0200d", s), "mac": "mac"},
			})
		}
		u.E2E.KeyBackup = kb
	}
	return u
}

func synthToken(uid string, d int) string { return fmt.Sprintf("syt_%x_%d", uid, d) }

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
