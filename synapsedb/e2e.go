package synapsedb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/sjson"
)

// clientColumns lists the tables and columns the client-API substitutes read (CheckClientSchema).
// Names follow Synapse's schema 72 and the deltas up to 94 (Synapse 1.163's SQLite schema dump).
var clientColumns = []struct{ table, columns string }{
	{"e2e_device_keys_json", "user_id, device_id, key_json"},
	{"e2e_cross_signing_keys", "user_id, keytype, keydata, stream_id"},
	{"e2e_cross_signing_signatures", "user_id, key_id, target_user_id, target_device_id, signature"},
	{"e2e_room_keys_versions", "user_id, version, algorithm, auth_data, deleted, etag"},
	{"e2e_room_keys", "user_id, room_id, session_id, version, first_message_index, forwarded_count, is_verified, session_data"},
	{"push_rules", "id, user_name, rule_id, priority_class, priority, conditions, actions"},
	{"push_rules_enable", "user_name, rule_id, enabled"},
	{"room_tags", "user_id, room_id, tag, content"},
}

// CheckClientSchema checks that every table and column of the reads that stand in for the client
// API (UserKeys, UserKeyBackup, UserPushRules, UserRoomTags) exists.
func (db *DB) CheckClientSchema(ctx context.Context) error {
	return db.checkColumns(ctx, clientColumns)
}

// UserKeys is what /keys/query shows a user about themselves: device keys and cross-signing keys,
// each with the signatures the user made on them merged in; no "unsigned".
type UserKeys struct {
	DeviceKeys                                map[string]json.RawMessage
	MasterKey, SelfSigningKey, UserSigningKey json.RawMessage // nil when the user has none
}

// signature is one row of e2e_cross_signing_signatures made by the user on their own key or device.
type signature struct{ keyID, target, sig string }

// UserKeys reads the device keys of the user's visible devices and the newest cross-signing key
// of each type, adding the signatures the user made on them, as Synapse does for /keys/query when
// the user asks about themselves.
func (db *DB) UserKeys(ctx context.Context, userID string) (*UserKeys, error) {
	out := &UserKeys{DeviceKeys: map[string]json.RawMessage{}}
	sigs := map[string][]signature{} // target device ID or public key → signatures
	err := db.each(ctx, "e2e_cross_signing_signatures", `SELECT t.key_id, t.target_device_id, t.signature
		FROM e2e_cross_signing_signatures t WHERE t.user_id = $1 AND t.target_user_id = $1`+db.orderBy("t.target_device_id", "t.key_id"),
		[]any{userID}, func(rows *sql.Rows) error {
			var s signature
			if err := rows.Scan(&s.keyID, &s.target, &s.sig); err != nil {
				return err
			}
			sigs[s.target] = append(sigs[s.target], s)
			return nil
		})
	if err != nil {
		return nil, err
	}
	err = db.each(ctx, "e2e_device_keys_json", `SELECT t.device_id, t.key_json FROM e2e_device_keys_json t
		JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
		WHERE t.user_id = $1 AND (d.hidden IS NULL OR d.hidden = FALSE)`+db.orderBy("t.device_id"),
		[]any{userID}, func(rows *sql.Rows) error {
			var dev, js string
			if err := rows.Scan(&dev, &js); err != nil {
				return err
			}
			k, err := withSignatures(js, userID, sigs[dev])
			if err != nil {
				return fmt.Errorf("device keys of %s device %s: %w", userID, dev, err)
			}
			out.DeviceKeys[dev] = k
			return nil
		})
	if err != nil {
		return nil, err
	}
	err = db.each(ctx, "e2e_cross_signing_keys", `SELECT t.keytype, t.keydata FROM e2e_cross_signing_keys t
		WHERE t.user_id = $1`+db.orderBy("t.keytype")+", t.stream_id", []any{userID}, func(rows *sql.Rows) error {
		var typ, js string
		if err := rows.Scan(&typ, &js); err != nil {
			return err
		}
		var key struct {
			Keys map[string]string `json:"keys"`
		}
		if err := json.Unmarshal([]byte(js), &key); err != nil || len(key.Keys) != 1 {
			return fmt.Errorf("%s cross-signing key of %s is not a key object with one key (%v)", typ, userID, err)
		}
		var pub string
		for _, v := range key.Keys {
			pub = v
		}
		k, err := withSignatures(js, userID, sigs[pub])
		if err != nil {
			return fmt.Errorf("%s cross-signing key of %s: %w", typ, userID, err)
		}
		switch typ { // ordered by stream_id within a type: the newest wins
		case "master":
			out.MasterKey = k
		case "self_signing":
			out.SelfSigningKey = k
		case "user_signing":
			out.UserSigningKey = k
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// withSignatures adds signer's signatures to the key object js and drops "unsigned".
func withSignatures(js, signer string, sigs []signature) (json.RawMessage, error) {
	if !json.Valid([]byte(js)) {
		return nil, fmt.Errorf("not valid JSON")
	}
	out := []byte(js)
	var err error
	if out, err = sjson.DeleteBytes(out, "unsigned"); err != nil {
		return nil, err
	}
	for _, s := range sigs {
		if out, err = sjson.SetBytes(out, "signatures."+escapePath(signer)+"."+escapePath(s.keyID), s.sig); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// escapePath escapes the characters sjson's path syntax gives a meaning to.
func escapePath(s string) string {
	r := strings.NewReplacer(`\`, `\\`, ".", `\.`, "*", `\*`, "?", `\?`, "|", `\|`, "#", `\#`, "@", `\@`, "!", `\!`, "=", `\=`, "<", `\<`, ">", `\>`, "%", `\%`, ":", `\:`)
	return r.Replace(s)
}

// KeyBackup is the current key-backup version of a user and every session in it, in the shapes
// of GET /room_keys/version and GET /room_keys/keys.
type KeyBackup struct {
	Version   string
	Algorithm string
	AuthData  json.RawMessage
	ETag      string
	Count     int64
	// Rooms maps room ID → session ID → {first_message_index, forwarded_count, is_verified, session_data}.
	Rooms map[string]map[string]json.RawMessage
}

// UserKeyBackup reads the user's current (highest, not deleted) key-backup version and its
// sessions; nil when the user has none.
func (db *DB) UserKeyBackup(ctx context.Context, userID string) (*KeyBackup, error) {
	var kb *KeyBackup
	var version int64
	err := db.each(ctx, "e2e_room_keys_versions", `SELECT t.version, t.algorithm, t.auth_data, COALESCE(t.etag, 0)
		FROM e2e_room_keys_versions t WHERE t.user_id = $1 AND t.deleted = 0 ORDER BY t.version DESC LIMIT 1`,
		[]any{userID}, func(rows *sql.Rows) error {
			var auth string
			var etag int64
			kb = &KeyBackup{Rooms: map[string]map[string]json.RawMessage{}}
			if err := rows.Scan(&version, &kb.Algorithm, &auth, &etag); err != nil {
				return err
			}
			if !json.Valid([]byte(auth)) {
				return fmt.Errorf("auth_data of key backup %d of %s is not valid JSON", version, userID)
			}
			kb.Version, kb.AuthData, kb.ETag = strconv.FormatInt(version, 10), json.RawMessage(auth), strconv.FormatInt(etag, 10)
			return nil
		})
	if err != nil || kb == nil {
		return nil, err
	}
	err = db.each(ctx, "e2e_room_keys", `SELECT t.room_id, t.session_id, t.first_message_index, t.forwarded_count, t.is_verified, t.session_data
		FROM e2e_room_keys t WHERE t.user_id = $1 AND t.version = $2`+db.orderBy("t.room_id", "t.session_id"),
		[]any{userID, version}, func(rows *sql.Rows) error {
			var room, session, data string
			var first, forwarded sql.NullInt64
			var verified any
			if err := rows.Scan(&room, &session, &first, &forwarded, &verified, &data); err != nil {
				return err
			}
			v, err := truthy(verified)
			if err != nil {
				return err
			}
			if !json.Valid([]byte(data)) {
				return fmt.Errorf("session_data of backed-up session %s in %s of %s is not valid JSON", session, room, userID)
			}
			obj, err := json.Marshal(struct {
				FirstMessageIndex *int64          `json:"first_message_index"`
				ForwardedCount    *int64          `json:"forwarded_count"`
				IsVerified        bool            `json:"is_verified"`
				SessionData       json.RawMessage `json:"session_data"`
			}{nullInt(first), nullInt(forwarded), v, json.RawMessage(data)})
			if err != nil {
				return err
			}
			if kb.Rooms[room] == nil {
				kb.Rooms[room] = map[string]json.RawMessage{}
			}
			kb.Rooms[room][session] = obj
			kb.Count++
			return nil
		})
	if err != nil {
		return nil, err
	}
	return kb, nil
}

func nullInt(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	return &n.Int64
}

// PushRule is one row of push_rules: a rule the user added (priority class 0–5) or new actions
// for a base rule (priority class -1).
type PushRule struct {
	// RuleID is namespaced, as Synapse stores it: "global/override/my.rule".
	RuleID        string
	PriorityClass int
	Priority      int64
	Conditions    json.RawMessage
	Actions       json.RawMessage
}

// PushRules are a user's rows of push_rules (highest priority class and priority first) and of
// push_rules_enable (by namespaced rule ID).
type PushRules struct {
	Rules   []PushRule
	Enabled map[string]bool
}

// UserPushRules reads the user's own push rules and enabled flags.
func (db *DB) UserPushRules(ctx context.Context, userID string) (*PushRules, error) {
	out := &PushRules{Enabled: map[string]bool{}}
	err := db.each(ctx, "push_rules", `SELECT t.rule_id, t.priority_class, t.priority, t.conditions, t.actions
		FROM push_rules t WHERE t.user_name = $1 ORDER BY t.priority_class DESC, t.priority DESC, t.id`,
		[]any{userID}, func(rows *sql.Rows) error {
			var r PushRule
			var cond, act string
			if err := rows.Scan(&r.RuleID, &r.PriorityClass, &r.Priority, &cond, &act); err != nil {
				return err
			}
			if !json.Valid([]byte(cond)) || !json.Valid([]byte(act)) {
				return fmt.Errorf("push rule %s of %s: conditions or actions are not valid JSON", r.RuleID, userID)
			}
			r.Conditions, r.Actions = json.RawMessage(cond), json.RawMessage(act)
			out.Rules = append(out.Rules, r)
			return nil
		})
	if err != nil {
		return nil, err
	}
	err = db.each(ctx, "push_rules_enable", `SELECT t.rule_id, t.enabled FROM push_rules_enable t WHERE t.user_name = $1`,
		[]any{userID}, func(rows *sql.Rows) error {
			var id string
			var enabled sql.NullInt64
			if err := rows.Scan(&id, &enabled); err != nil {
				return err
			}
			if enabled.Valid { // Synapse treats a null as "no override"
				out.Enabled[id] = enabled.Int64 != 0
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UserRoomTags reads the user's room tags: room ID → tag → tag content (e.g. {"order":0.5}).
func (db *DB) UserRoomTags(ctx context.Context, userID string) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	err := db.each(ctx, "room_tags", `SELECT t.room_id, t.tag, t.content FROM room_tags t WHERE t.user_id = $1`+db.orderBy("t.room_id", "t.tag"),
		[]any{userID}, func(rows *sql.Rows) error {
			var room, tag, content string
			if err := rows.Scan(&room, &tag, &content); err != nil {
				return err
			}
			if !json.Valid([]byte(content)) {
				return fmt.Errorf("tag %q of %s on %s is not valid JSON", tag, userID, room)
			}
			if out[room] == nil {
				out[room] = map[string]json.RawMessage{}
			}
			out[room][tag] = json.RawMessage(content)
			return nil
		})
	return out, err
}
