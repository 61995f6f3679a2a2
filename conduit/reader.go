package conduit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// The reader: what Conduit would read back from the trees the writer fills. It works on databases
// opened ReadOnly too; each method holds the database for its duration.

func (db *DB) read(fn func(ctx context.Context) error) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.store == nil {
		return fmt.Errorf("conduit: database closed")
	}
	return fn(context.Background())
}

// Users lists every key of userid_password (local and remote users, Conduit's own server user too).
func (db *DB) Users() ([]string, error) {
	var out []string
	err := db.read(func(ctx context.Context) error {
		return db.scan(ctx, "userid_password", nil, func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// User reads a user's password hash and profile; ok is false when the user does not exist.
func (db *DB) User(id string) (u User, ok bool, err error) {
	err = db.read(func(ctx context.Context) error {
		hash, found, err := db.get(ctx, "userid_password", []byte(id))
		if err != nil || !found {
			return err
		}
		ok = true
		u = User{ID: id, PasswordHash: string(hash)}
		for _, f := range []struct {
			tree string
			dst  *string
		}{{"userid_displayname", &u.DisplayName}, {"userid_avatarurl", &u.AvatarURL}, {"userid_blurhash", &u.Blurhash}} {
			v, _, err := db.get(ctx, f.tree, []byte(id))
			if err != nil {
				return err
			}
			*f.dst = string(v)
		}
		return nil
	})
	return u, ok, err
}

// Devices reads a user's devices (userdeviceid_metadata) in device ID order.
func (db *DB) Devices(user string) ([]Device, error) {
	var out []Device
	err := db.read(func(ctx context.Context) error {
		return db.scan(ctx, "userdeviceid_metadata", append([]byte(user), sep), func(k, v []byte) error {
			var d struct {
				DeviceID    string  `json:"device_id"`
				DisplayName *string `json:"display_name"`
				LastSeenIP  *string `json:"last_seen_ip"`
				LastSeenTS  *int64  `json:"last_seen_ts"`
			}
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("conduit: device row %q: %w", k, err)
			}
			dev := Device{ID: d.DeviceID}
			if d.DisplayName != nil {
				dev.DisplayName = *d.DisplayName
			}
			if d.LastSeenIP != nil {
				dev.LastSeenIP = *d.LastSeenIP
			}
			if d.LastSeenTS != nil {
				dev.LastSeenTS = *d.LastSeenTS
			}
			out = append(out, dev)
			return nil
		})
	})
	return out, err
}

// DeviceListVersion reads userid_devicelistversion[user] (0 when absent).
func (db *DB) DeviceListVersion(user string) (uint64, error) {
	return db.u64(func(ctx context.Context) ([]byte, bool, error) {
		return db.get(ctx, "userid_devicelistversion", []byte(user))
	})
}

func (db *DB) u64(get func(ctx context.Context) ([]byte, bool, error)) (uint64, error) {
	var n uint64
	err := db.read(func(ctx context.Context) error {
		v, ok, err := get(ctx)
		if err != nil || !ok {
			return err
		}
		if len(v) != 8 {
			return fmt.Errorf("conduit: count is %d bytes, not 8", len(v))
		}
		n = binary.BigEndian.Uint64(v)
		return nil
	})
	return n, err
}

// DeviceKeys reads the device keys of each of the user's devices (keyid_key[user 0xFF device]).
func (db *DB) DeviceKeys(user string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	err := db.read(func(ctx context.Context) error {
		return db.scan(ctx, "userdeviceid_metadata", append([]byte(user), sep), func(k, _ []byte) error {
			v, ok, err := db.get(ctx, "keyid_key", k)
			if err != nil || !ok {
				return err
			}
			out[string(k[len(user)+1:])] = json.RawMessage(v)
			return nil
		})
	})
	return out, err
}

// CrossSigningKeys reads the user's cross-signing keys by usage, through the userid_*keyid index trees.
func (db *DB) CrossSigningKeys(user string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	err := db.read(func(ctx context.Context) error {
		for usage, index := range crossSigningIndex {
			key, ok, err := db.get(ctx, index, []byte(user))
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			v, ok, err := db.get(ctx, "keyid_key", key)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("conduit: %s[%s] points at a missing keyid_key row", index, user)
			}
			out[usage] = json.RawMessage(v)
		}
		return nil
	})
	return out, err
}

// KeyChanges lists the counts of the user's own key change markers (keychangeid_userid[user 0xFF count]).
func (db *DB) KeyChanges(user string) ([]uint64, error) {
	var out []uint64
	err := db.read(func(ctx context.Context) error {
		return db.scan(ctx, "keychangeid_userid", append([]byte(user), sep), func(k, v []byte) error {
			rest := k[len(user)+1:]
			if len(rest) == 8 && string(v) == user {
				out = append(out, binary.BigEndian.Uint64(rest))
			}
			return nil
		})
	})
	return out, err
}

// AccountData reads the user's account data contents by room ("" = global) and type, through
// roomusertype_roomuserdataid as Conduit's get does.
func (db *DB) AccountData(user string) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	err := db.read(func(ctx context.Context) error {
		// Index keys are room 0xFF user 0xFF type; scan everything and pick this user's rows.
		return db.scan(ctx, "roomusertype_roomuserdataid", nil, func(k, dataKey []byte) error {
			parts := bytes.SplitN(k, []byte{sep}, 3)
			if len(parts) != 3 || string(parts[1]) != user {
				return nil
			}
			v, ok, err := db.get(ctx, "roomuserdataid_accountdata", dataKey)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("conduit: account data index %q points at a missing row", k)
			}
			var ev struct {
				Type    string          `json:"type"`
				Content json.RawMessage `json:"content"`
			}
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("conduit: account data row %q: %w", dataKey, err)
			}
			room := string(parts[0])
			if out[room] == nil {
				out[room] = map[string]json.RawMessage{}
			}
			out[room][string(parts[2])] = ev.Content
			return nil
		})
	})
	return out, err
}

// Pushers reads the user's pushers (senderkey_pusher) by pushkey.
func (db *DB) Pushers(user string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	err := db.read(func(ctx context.Context) error {
		return db.scan(ctx, "senderkey_pusher", append([]byte(user), sep), func(k, v []byte) error {
			out[string(k[len(user)+1:])] = json.RawMessage(v)
			return nil
		})
	})
	return out, err
}

// Backup is one key backup version with its sessions.
type Backup struct {
	Version   string
	Algorithm json.RawMessage
	Etag      uint64
	Sessions  map[string]map[string]json.RawMessage // room → session ID → KeyBackupData
}

// Backups reads the user's key backup versions and sessions.
func (db *DB) Backups(user string) ([]Backup, error) {
	var out []Backup
	err := db.read(func(ctx context.Context) error {
		if err := db.scan(ctx, "backupid_algorithm", append([]byte(user), sep), func(k, v []byte) error {
			b := Backup{Version: string(k[len(user)+1:]), Algorithm: json.RawMessage(v), Sessions: map[string]map[string]json.RawMessage{}}
			if e, ok, err := db.get(ctx, "backupid_etag", k); err != nil {
				return err
			} else if ok && len(e) == 8 {
				b.Etag = binary.BigEndian.Uint64(e)
			}
			out = append(out, b)
			return nil
		}); err != nil {
			return err
		}
		for i := range out {
			prefix := joinS(user, out[i].Version, "")
			if err := db.scan(ctx, "backupkeyid_backup", prefix, func(k, v []byte) error {
				rest := bytes.SplitN(k[len(prefix):], []byte{sep}, 2)
				if len(rest) != 2 {
					return fmt.Errorf("conduit: backup key %q", k)
				}
				room := string(rest[0])
				if out[i].Sessions[room] == nil {
					out[i].Sessions[room] = map[string]json.RawMessage{}
				}
				out[i].Sessions[room][string(rest[1])] = json.RawMessage(v)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// AccessTokens reads the user's access tokens by device, checking that token_userdeviceid points back.
func (db *DB) AccessTokens(user string) (map[string]string, error) {
	out := map[string]string{}
	err := db.read(func(ctx context.Context) error {
		return db.scan(ctx, "userdeviceid_token", append([]byte(user), sep), func(k, v []byte) error {
			back, ok, err := db.get(ctx, "token_userdeviceid", v)
			if err != nil {
				return err
			}
			if !ok || !bytes.Equal(back, k) {
				return fmt.Errorf("conduit: token of %q has no matching token_userdeviceid row", k)
			}
			out[string(k[len(user)+1:])] = string(v)
			return nil
		})
	})
	return out, err
}

// OneTimeKeys reads the user's one-time keys by device and key ID ("signed_curve25519:AAAAHg").
func (db *DB) OneTimeKeys(user string) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	err := db.read(func(ctx context.Context) error {
		return db.scan(ctx, "onetimekeyid_onetimekeys", append([]byte(user), sep), func(k, v []byte) error {
			rest := bytes.SplitN(k[len(user)+1:], []byte{sep}, 2)
			if len(rest) != 2 {
				return fmt.Errorf("conduit: one-time key %q", k)
			}
			var id string
			if err := json.Unmarshal(rest[1], &id); err != nil {
				return fmt.Errorf("conduit: one-time key ID %q is not JSON-quoted", rest[1])
			}
			dev := string(rest[0])
			if out[dev] == nil {
				out[dev] = map[string]json.RawMessage{}
			}
			out[dev][id] = json.RawMessage(v)
			return nil
		})
	})
	return out, err
}

// MediaFile is a media item as Conduit would serve it.
type MediaFile struct {
	Media
	SHA256  [32]byte // content-addressed layouts only
	Size    uint64
	Path    string
	Content []byte
}

// Media reads a media item's metadata and file; ok is false when Conduit would answer "not found".
func (db *DB) Media(server, mediaID string) (mf MediaFile, ok bool, err error) {
	err = db.read(func(ctx context.Context) error {
		mf.Server, mf.MediaID = server, mediaID
		if db.MediaLayout() == MediaLegacy {
			var key []byte
			if err := db.scan(ctx, "mediaid_file", legacyMediaPrefix(server, mediaID), func(k, _ []byte) error {
				key = k
				return errStop
			}); err != nil || key == nil {
				return err
			}
			parts := bytes.Split(key[len(legacyMediaPrefix(server, mediaID)):], []byte{sep})
			if len(parts) != 2 {
				return fmt.Errorf("conduit: mediaid_file key %q", key)
			}
			mf.Filename = filenameFromDisposition(string(parts[0]))
			mf.ContentType = string(parts[1])
			mf.Path = LegacyMediaPath(db.mediaPath, key)
		} else {
			id := joinS(server, mediaID)
			meta, found, err := db.get(ctx, "servernamemediaid_metadata", id)
			if err != nil || !found {
				return err
			}
			if len(meta) < 32 {
				return fmt.Errorf("conduit: media metadata of mxc://%s/%s is %d bytes", server, mediaID, len(meta))
			}
			copy(mf.SHA256[:], meta[:32])
			parts := bytes.Split(meta[32:], []byte{sep})
			mf.Filename = string(parts[0])
			if len(parts) > 1 {
				mf.ContentType = string(parts[1])
			}
			mf.UnauthenticatedAccess = len(parts) > 2 && len(parts[2]) == 0
			fm, found, err := db.get(ctx, "filehash_metadata", meta[:32])
			if err != nil || !found {
				return err // Conduit serves nothing without filehash_metadata
			}
			if len(fm) >= 16 {
				mf.Size = binary.BigEndian.Uint64(fm[:8])
				mf.CreatedTS = int64(binary.BigEndian.Uint64(fm[8:16])) * 1000
			}
			if lp, found, err := db.get(ctx, "servernamemediaid_userlocalpart", id); err != nil {
				return err
			} else if found {
				mf.Uploader = "@" + string(lp) + ":" + server
			}
			mf.Path = ContentAddressedPath(db.mediaPath, mf.SHA256)
		}
		content, err := os.ReadFile(mf.Path)
		if err != nil {
			return fmt.Errorf("conduit: media mxc://%s/%s: %w", server, mediaID, err)
		}
		mf.Content = content
		ok = true
		return nil
	})
	return mf, ok, err
}

// filenameFromDisposition undoes ContentDisposition for the names it writes.
func filenameFromDisposition(cd string) string {
	switch {
	case strings.HasPrefix(cd, "inline; filename*=utf-8''"):
		s := strings.TrimPrefix(cd, "inline; filename*=utf-8''")
		var b []byte
		for i := 0; i < len(s); i++ {
			if s[i] == '%' && i+2 < len(s) {
				var c byte
				fmt.Sscanf(s[i+1:i+3], "%02X", &c)
				b = append(b, c)
				i += 2
				continue
			}
			b = append(b, s[i])
		}
		return string(b)
	case strings.HasPrefix(cd, `inline; filename="`):
		s := strings.TrimSuffix(strings.TrimPrefix(cd, `inline; filename="`), `"`)
		return strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(s)
	case strings.HasPrefix(cd, "inline; filename="):
		return strings.TrimPrefix(cd, "inline; filename=")
	}
	return ""
}

// Keypair reads global["keypair"]: the key version and the Ed25519 seed (from PKCS#8 v1 or v2).
func (db *DB) Keypair() (version string, seed []byte, err error) {
	err = db.read(func(ctx context.Context) error {
		v, ok, err := db.get(ctx, "global", []byte("keypair"))
		if err != nil {
			return err
		}
		i := bytes.IndexByte(v, sep)
		if !ok || i <= 0 {
			return fmt.Errorf("conduit: no valid global[\"keypair\"]")
		}
		version = string(v[:i])
		der := v[i+1:]
		// v1 and v2 PrivateKeyInfo both carry the seed as OCTET STRING 04 20 <32 bytes> right after
		// the algorithm identifier; the v2 form appends the public key.
		j := bytes.Index(der, []byte{0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20})
		if j < 0 || len(der) < j+9+ed25519.SeedSize {
			return fmt.Errorf("conduit: global[\"keypair\"] is not an Ed25519 PKCS#8 key")
		}
		seed = bytes.Clone(der[j+9 : j+9+ed25519.SeedSize])
		return nil
	})
	return version, seed, err
}

// ServerSigningKeys reads server_signingkeys[server]; ok is false when absent.
func (db *DB) ServerSigningKeys(server string) (doc ServerSigningKeys, ok bool, err error) {
	err = db.read(func(ctx context.Context) error {
		v, found, err := db.get(ctx, "server_signingkeys", []byte(server))
		if err != nil || !found {
			return err
		}
		var raw struct {
			VerifyKeys map[string]struct {
				Key string `json:"key"`
			} `json:"verify_keys"`
			OldVerifyKeys map[string]struct {
				Key       string `json:"key"`
				ExpiredTS int64  `json:"expired_ts"`
			} `json:"old_verify_keys"`
			ValidUntilTS int64 `json:"valid_until_ts"`
		}
		if err := json.Unmarshal(v, &raw); err != nil {
			return fmt.Errorf("conduit: server_signingkeys[%s]: %w", server, err)
		}
		ok = true
		doc = ServerSigningKeys{VerifyKeys: map[string]string{}, OldVerifyKeys: map[string]OldVerifyKey{}, ValidUntilTS: raw.ValidUntilTS}
		for id, k := range raw.VerifyKeys {
			doc.VerifyKeys[id] = k.Key
		}
		for id, k := range raw.OldVerifyKeys {
			doc.OldVerifyKeys[id] = OldVerifyKey{Key: k.Key, ExpiredTS: k.ExpiredTS}
		}
		return nil
	})
	return doc, ok, err
}

// Counter reads global["c"].
func (db *DB) Counter() (uint64, error) {
	return db.u64(func(ctx context.Context) ([]byte, bool, error) {
		return db.get(ctx, "global", []byte("c"))
	})
}

// Raw reads one row of any of Conduit's tables, for tests and diagnostics.
func (db *DB) Raw(tree string, key []byte) (value []byte, ok bool, err error) {
	err = db.read(func(ctx context.Context) error {
		value, ok, err = db.get(ctx, tree, key)
		return err
	})
	return value, ok, err
}

// Rows reads every row of a table whose key starts with prefix, in key order.
func (db *DB) Rows(tree string, prefix []byte) (keys, values [][]byte, err error) {
	err = db.read(func(ctx context.Context) error {
		return db.scan(ctx, tree, prefix, func(k, v []byte) error {
			keys = append(keys, k)
			values = append(values, v)
			return nil
		})
	})
	return keys, values, err
}
