// Package synapsedbtest writes Synapse's tables (the columns synapsedb reads, with Synapse's names
// and types) into PostgreSQL or SQLite and fills them from a generated world, plus rows that
// synapsedb must leave out: puppet (login-as) tokens, expired tokens, tokens without a device and
// sessions of a deactivated user.
package synapsedbtest

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	_ "modernc.org/sqlite"             // driver "sqlite"

	"github.com/transition-matrix/transition-matrix/internal/tb"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/synapsedb"
)

// schema creates the tables with the names, column names and types of Synapse's schema 72
// (synapse/storage/schema/main/full_schemas/72) and later deltas, written for these tests and
// limited to what they need. The same statements run on PostgreSQL and SQLite.
var schema = []string{
	`CREATE TABLE users (name TEXT, password_hash TEXT, creation_ts BIGINT, admin SMALLINT DEFAULT 0 NOT NULL,
		is_guest SMALLINT DEFAULT 0 NOT NULL, appservice_id TEXT, user_type TEXT, deactivated SMALLINT DEFAULT 0 NOT NULL,
		shadow_banned BOOLEAN, UNIQUE (name))`,
	`CREATE TABLE devices (user_id TEXT NOT NULL, device_id TEXT NOT NULL, display_name TEXT, last_seen BIGINT,
		ip TEXT, user_agent TEXT, hidden BOOLEAN DEFAULT FALSE, UNIQUE (user_id, device_id))`,
	`CREATE TABLE access_tokens (id BIGINT PRIMARY KEY, user_id TEXT NOT NULL, device_id TEXT, token TEXT NOT NULL,
		valid_until_ms BIGINT, puppets_user_id TEXT, last_validated BIGINT, refresh_token_id BIGINT, used BOOLEAN,
		UNIQUE (token))`,
	`CREATE INDEX access_tokens_device_id ON access_tokens (user_id, device_id)`,
	`CREATE TABLE e2e_one_time_keys_json (user_id TEXT NOT NULL, device_id TEXT NOT NULL, algorithm TEXT NOT NULL,
		key_id TEXT NOT NULL, ts_added_ms BIGINT NOT NULL, key_json TEXT NOT NULL,
		UNIQUE (user_id, device_id, algorithm, key_id))`,
	`CREATE TABLE e2e_fallback_keys_json (user_id TEXT NOT NULL, device_id TEXT NOT NULL, algorithm TEXT NOT NULL,
		key_id TEXT NOT NULL, key_json TEXT NOT NULL, used BOOLEAN DEFAULT FALSE NOT NULL,
		UNIQUE (user_id, device_id, algorithm))`,
	`CREATE TABLE local_media_repository (media_id TEXT, media_type TEXT, media_length INTEGER, created_ts BIGINT,
		upload_name TEXT, user_id TEXT, quarantined_by TEXT, url_cache TEXT, last_access_ts BIGINT,
		safe_from_quarantine BOOLEAN DEFAULT FALSE NOT NULL, UNIQUE (media_id))`,
	`CREATE TABLE local_media_repository_thumbnails (media_id TEXT, thumbnail_width INTEGER, thumbnail_height INTEGER,
		thumbnail_type TEXT, thumbnail_method TEXT, thumbnail_length INTEGER,
		UNIQUE (media_id, thumbnail_width, thumbnail_height, thumbnail_type, thumbnail_method))`,
	// The tables of the client-API stand-ins, with the columns of Synapse 1.163.2's schema (94).
	`CREATE TABLE e2e_device_keys_json (user_id TEXT NOT NULL, device_id TEXT NOT NULL, ts_added_ms BIGINT NOT NULL,
		key_json TEXT NOT NULL, UNIQUE (user_id, device_id))`,
	`CREATE TABLE e2e_cross_signing_keys (user_id TEXT NOT NULL, keytype TEXT NOT NULL, keydata TEXT NOT NULL,
		stream_id BIGINT NOT NULL, updatable_without_uia_before_ms BIGINT DEFAULT NULL, instance_name TEXT)`,
	`CREATE TABLE e2e_cross_signing_signatures (user_id TEXT NOT NULL, key_id TEXT NOT NULL, target_user_id TEXT NOT NULL,
		target_device_id TEXT NOT NULL, signature TEXT NOT NULL)`,
	`CREATE TABLE e2e_room_keys_versions (user_id TEXT NOT NULL, version BIGINT NOT NULL, algorithm TEXT NOT NULL,
		auth_data TEXT NOT NULL, deleted SMALLINT DEFAULT 0 NOT NULL, etag BIGINT)`,
	`CREATE TABLE e2e_room_keys (user_id TEXT NOT NULL, room_id TEXT NOT NULL, session_id TEXT NOT NULL, version BIGINT NOT NULL,
		first_message_index INT, forwarded_count INT, is_verified BOOLEAN, session_data TEXT NOT NULL)`,
	`CREATE TABLE push_rules (id BIGINT PRIMARY KEY, user_name TEXT NOT NULL, rule_id TEXT NOT NULL, priority_class SMALLINT NOT NULL,
		priority INTEGER NOT NULL DEFAULT 0, conditions TEXT NOT NULL, actions TEXT NOT NULL, UNIQUE (user_name, rule_id))`,
	`CREATE TABLE push_rules_enable (id BIGINT PRIMARY KEY, user_name TEXT NOT NULL, rule_id TEXT NOT NULL, enabled SMALLINT,
		UNIQUE (user_name, rule_id))`,
	`CREATE TABLE room_tags (user_id TEXT NOT NULL, room_id TEXT NOT NULL, tag TEXT NOT NULL, content TEXT NOT NULL,
		UNIQUE (user_id, room_id, tag))`,
}

// CreateSchema creates Synapse's tables in db (backend synapsedb.Postgres or synapsedb.SQLite).
func CreateSchema(ctx context.Context, db *sql.DB) error {
	for _, s := range schema {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("synapsedbtest: %s: %w", strings.Fields(s)[2], err)
		}
	}
	return nil
}

// ExpiredAt is the valid_until_ms of the expired noise token: long before any world's base time.
const ExpiredAt = int64(1_600_000_000_000) // 2020-09-13

// Fill writes the world's users, devices, access tokens, one-time and fallback keys and local
// media rows, and the noise rows synapsedb must leave out, in one transaction.
func Fill(ctx context.Context, db *sql.DB, backend string, w *world.World) error {
	t := newTables(backend)
	admin := w.Users[0]
	for _, u := range w.Users {
		deact := 0
		if u.Deactivated {
			deact = 1
		}
		t.add("users", u.ID, nullStr(u.PasswordHash), u.CreationTS, boolInt(u.Admin), nullStr(u.UserType), deact)
		for _, d := range u.Devices {
			t.add("devices", u.ID, d.ID, nullStr(d.DisplayName), d.LastSeenTS, d.LastSeenIP, d.LastSeenUserAgent, false)
			t.token(u.ID, d.ID, d.AccessToken, d.AccessTokenValidUntilMS, "")
			for _, full := range sortedKeys(d.OneTimeKeys) {
				alg, id, _ := strings.Cut(full, ":")
				t.add("e2e_one_time_keys_json", u.ID, d.ID, alg, id, u.CreationTS, string(d.OneTimeKeys[full]))
			}
			if f := d.FallbackKey; f != nil {
				t.add("e2e_fallback_keys_json", u.ID, d.ID, f.Algorithm, f.KeyID, string(f.JSON), f.Used)
			}
		}
		for _, m := range u.Media {
			t.add("local_media_repository", m.ID, m.ContentType, len(m.Bytes), m.CreatedTS, nullStr(m.UploadName), u.ID,
				nullStr(m.QuarantinedBy), nullInt(m.LastAccessTS), false)
			for _, th := range m.Thumbnails {
				t.add("local_media_repository_thumbnails", m.ID, th.Width, th.Height, th.ContentType, th.Method, len(th.Bytes))
			}
		}
	}
	if err := addNoise(t, w, admin); err != nil {
		return err
	}
	return t.write(ctx, db)
}

// addNoise adds the rows every synapsedb reader must skip.
func addNoise(t *tables, w *world.World, admin *world.User) error {
	var alice, carol, dave *world.User
	for _, u := range w.Users {
		switch u.Localpart {
		case "alice":
			alice = u
		case "carol":
			carol = u
		case "dave":
			dave = u
		}
	}
	if alice == nil || carol == nil || dave == nil || !dave.Deactivated || len(admin.Devices) == 0 || len(alice.Devices) == 0 {
		return fmt.Errorf("synapsedbtest: the world lacks alice, carol, a deactivated dave or an admin device")
	}
	// Login-as tokens: user_id is the admin, puppets_user_id the user (synapse/rest/admin/users.py).
	t.token(admin.ID, "", "syt_noise_puppet_nodevice", 0, alice.ID)
	t.token(admin.ID, admin.Devices[0].ID, "syt_noise_puppet_withdevice", 0, carol.ID)
	t.token(alice.ID, alice.Devices[0].ID, "syt_noise_expired", ExpiredAt, "")
	t.token(carol.ID, "", "syt_noise_nodevice", 0, "")
	t.token(carol.ID, "GONEDEVICE", "syt_noise_device_gone", 0, "")
	// A deactivated user whose device and keys Synapse failed to delete.
	t.add("devices", dave.ID, "DAVEDEVICE", nil, nil, nil, nil, false)
	t.token(dave.ID, "DAVEDEVICE", "syt_noise_deactivated", 0, "")
	t.add("e2e_one_time_keys_json", dave.ID, "DAVEDEVICE", "signed_curve25519", "AAAAAQ", int64(0), `{"key":"noise"}`)
	t.add("e2e_fallback_keys_json", dave.ID, "DAVEDEVICE", "signed_curve25519", "AAAAAA", `{"key":"noise"}`, false)
	// Cross-signing keys live as hidden devices; keys filed under one are not a session's.
	t.add("devices", carol.ID, "HIDDENKEYDEVICE", nil, nil, nil, nil, true)
	t.add("e2e_one_time_keys_json", carol.ID, "HIDDENKEYDEVICE", "signed_curve25519", "AAAAAQ", int64(0), `{"key":"noise"}`)
	t.add("e2e_one_time_keys_json", carol.ID, "GONEDEVICE", "signed_curve25519", "AAAAAQ", int64(0), `{"key":"noise"}`)
	return nil
}

// Tokens returns what synapsedb.DB.Tokens must return for a world written by Fill.
func Tokens(w *world.World) []synapsedb.Token {
	var out []synapsedb.Token
	for _, u := range w.Users {
		if u.Deactivated {
			continue
		}
		for _, d := range u.Devices {
			out = append(out, synapsedb.Token{UserID: u.ID, DeviceID: d.ID, Token: d.AccessToken, ValidUntilMS: d.AccessTokenValidUntilMS})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.UserID != b.UserID {
			return a.UserID < b.UserID
		}
		return a.DeviceID < b.DeviceID
	})
	return out
}

// OneTimeKeys returns what synapsedb.DB.OneTimeKeys must return for a world written by Fill.
func OneTimeKeys(w *world.World) []synapsedb.OneTimeKey {
	var out []synapsedb.OneTimeKey
	for _, u := range w.Users {
		for _, d := range u.Devices {
			for full, js := range d.OneTimeKeys {
				alg, id, _ := strings.Cut(full, ":")
				out = append(out, synapsedb.OneTimeKey{UserID: u.ID, DeviceID: d.ID, Algorithm: alg, KeyID: id, KeyJSON: js})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.UserID+"\x00"+a.DeviceID+"\x00"+a.Algorithm+"\x00"+a.KeyID < b.UserID+"\x00"+b.DeviceID+"\x00"+b.Algorithm+"\x00"+b.KeyID
	})
	return out
}

// FallbackKeys returns what synapsedb.DB.FallbackKeys must return for a world written by Fill.
func FallbackKeys(w *world.World) []synapsedb.FallbackKey {
	var out []synapsedb.FallbackKey
	for _, u := range w.Users {
		for _, d := range u.Devices {
			if f := d.FallbackKey; f != nil {
				out = append(out, synapsedb.FallbackKey{UserID: u.ID, DeviceID: d.ID, Algorithm: f.Algorithm, KeyID: f.KeyID, KeyJSON: f.JSON, Used: f.Used})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.UserID != b.UserID {
			return a.UserID < b.UserID
		}
		return a.DeviceID < b.DeviceID
	})
	return out
}

// WriteSQLite creates a Synapse SQLite database in a temporary directory, fills it from w and
// returns its path.
func WriteSQLite(t tb.TB, w *world.World) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "homeserver.db")
	db := OpenSQLite(t, path)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := Fill(ctx, db, synapsedb.SQLite, w); err != nil {
		t.Fatal(err)
	}
	return path
}

// WritePostgres creates Synapse's tables in the empty PostgreSQL database at dsn and fills them
// from w.
func WritePostgres(t tb.TB, dsn string, w *world.World) {
	t.Helper()
	db := OpenPostgres(t, dsn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := CreateSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := Fill(ctx, db, synapsedb.Postgres, w); err != nil {
		t.Fatal(err)
	}
}

// OpenSQLite opens (creating it if needed) a writable SQLite file.
func OpenSQLite(t tb.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	return db
}

// OpenPostgres opens a writable PostgreSQL connection pool.
func OpenPostgres(t tb.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// tables collects rows per table, then inserts them in batches.
type tables struct {
	backend string
	order   []string
	rows    map[string][][]any
	tokenID int64
}

var columns = map[string]string{
	"users":                             "name, password_hash, creation_ts, admin, user_type, deactivated",
	"devices":                           "user_id, device_id, display_name, last_seen, ip, user_agent, hidden",
	"access_tokens":                     "id, user_id, device_id, token, valid_until_ms, puppets_user_id",
	"e2e_one_time_keys_json":            "user_id, device_id, algorithm, key_id, ts_added_ms, key_json",
	"e2e_fallback_keys_json":            "user_id, device_id, algorithm, key_id, key_json, used",
	"local_media_repository":            "media_id, media_type, media_length, created_ts, upload_name, user_id, quarantined_by, last_access_ts, safe_from_quarantine",
	"local_media_repository_thumbnails": "media_id, thumbnail_width, thumbnail_height, thumbnail_type, thumbnail_method, thumbnail_length",
}

func newTables(backend string) *tables {
	return &tables{backend: backend, rows: map[string][][]any{}, order: []string{
		"users", "devices", "access_tokens", "e2e_one_time_keys_json", "e2e_fallback_keys_json",
		"local_media_repository", "local_media_repository_thumbnails",
	}}
}

func (t *tables) add(table string, vals ...any) { t.rows[table] = append(t.rows[table], vals) }

func (t *tables) token(user, device, token string, validUntil int64, puppets string) {
	t.tokenID++
	t.add("access_tokens", t.tokenID, user, nullStr(device), token, nullInt(validUntil), nullStr(puppets))
}

func (t *tables) write(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	for _, table := range t.order {
		if err := insert(ctx, tx, t.backend, table, t.rows[table]); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Insert adds rows (values in the order of the columns Fill writes) to one of Synapse's tables in
// batches; benchmarks use it to write many rows quickly.
func Insert(ctx context.Context, db *sql.DB, backend, table string, rows [][]any) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if err := insert(ctx, tx, backend, table, rows); err != nil {
		return err
	}
	return tx.Commit()
}

func insert(ctx context.Context, tx *sql.Tx, backend, table string, rows [][]any) error {
	cols := columns[table]
	if cols == "" {
		return fmt.Errorf("synapsedbtest: no columns known for table %s", table)
	}
	const batch = 200
	for start := 0; start < len(rows); start += batch {
		chunk := rows[start:min(start+batch, len(rows))]
		var sb strings.Builder
		sb.WriteString("INSERT INTO " + table + " (" + cols + ") VALUES ")
		var args []any
		for i, r := range chunk {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('(')
			for j, v := range r {
				if j > 0 {
					sb.WriteByte(',')
				}
				args = append(args, v)
				if backend == synapsedb.Postgres {
					fmt.Fprintf(&sb, "$%d", len(args))
				} else {
					sb.WriteByte('?')
				}
			}
			sb.WriteByte(')')
		}
		if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
			return fmt.Errorf("synapsedbtest: insert into %s: %w", table, err)
		}
	}
	return nil
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullInt(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// FillBulk writes users×devices synthetic sessions (user, device, access token, one fallback key
// each) for benchmarks.
func FillBulk(ctx context.Context, db *sql.DB, backend string, users, devices int) error {
	t := newTables(backend)
	t.tokenID = 1 << 32
	for i := range users {
		uid := fmt.Sprintf("@bulk%06d:bulk.test", i)
		t.add("users", uid, nil, int64(1_700_000_000_000), 0, nil, 0)
		for k := range devices {
			did := fmt.Sprintf("BULK%02dDEV", k)
			t.add("devices", uid, did, nil, nil, nil, nil, false)
			t.token(uid, did, fmt.Sprintf("syt_bulk_%06d_%02d_abcdefghijklmnopqrst", i, k), 0, "")
			t.add("e2e_fallback_keys_json", uid, did, "signed_curve25519", "AAAAAA", `{"key":"bulk","fallback":true}`, false)
		}
	}
	return t.write(ctx, db)
}
