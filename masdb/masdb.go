// Package masdb reads, read-only, what the Matrix Authentication Service (MAS) holds for a Synapse
// that hands it its logins: password hashes, compatibility sessions with their access tokens, and
// the OAuth 2.0 sessions that cannot be carried. Table and column names come from MAS's migrations
// (crates/storage-pg/migrations, 2022-10 to 2026-07); see docs/mas.md.
package masdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/transition-matrix/transition-matrix/internal/pgreadonly"
)

// Refusals of Open.
var (
	ErrNotPostgres = errors.New("MAS's database is PostgreSQL")
	ErrSchema      = errors.New("not a MAS database this shim knows")
)

// requiredColumns are the tables and columns read, with the migration that made each current.
var requiredColumns = []struct{ table, columns string }{
	{"users", "user_id, username, deactivated_at, locked_at"},                              // init, 20230728 user_lock, 20250311 deactivated_at
	{"user_passwords", "user_id, hashed_password, version, created_at"},                    // init, 20221213 password_schemes
	{"compat_sessions", "compat_session_id, user_id, device_id, created_at, finished_at"},  // init, 20250114 device_id nullable
	{"compat_access_tokens", "compat_session_id, access_token, created_at, expires_at"},    // init
	{"oauth2_sessions", "oauth2_session_id, user_id, scope_list, created_at, finished_at"}, // init, 20230829 user_id + scope_list
}

// DB is an open, read-only MAS database.
type DB struct {
	// Now decides which tokens have expired (default time.Now).
	Now func() time.Time

	sql   *sql.DB
	where string
	dsn   pgreadonly.DSN // scrubs the password from errors
}

// Open connects to MAS's PostgreSQL database (a postgres:// URL) in read-only sessions and checks
// that every table and column read exists.
func Open(ctx context.Context, dsn string) (*DB, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return nil, fmt.Errorf("masdb: %w: give -mas-db as a postgres:// URL (MAS's database.uri)", ErrNotPostgres)
	}
	d, err := pgreadonly.ParseDSN(dsn)
	if err != nil {
		return nil, errors.New("masdb: the MAS database DSN is not a valid URL (its text is not repeated here: it may hold a password)")
	}
	db := &DB{where: d.Redacted, dsn: d}
	if db.sql, err = pgreadonly.Open(dsn); err != nil {
		return nil, db.wrap("cannot parse the DSN of the MAS database at", err)
	}
	if err := db.sql.PingContext(ctx); err != nil {
		db.sql.Close()
		return nil, db.wrap("cannot reach the MAS database at", err)
	}
	for _, tc := range requiredColumns {
		rows, err := db.sql.QueryContext(ctx, "SELECT "+tc.columns+" FROM "+tc.table+" WHERE FALSE")
		if err == nil {
			err = rows.Close()
		}
		if err != nil {
			db.sql.Close()
			var pg *pgconn.PgError
			if errors.As(err, &pg) && (pg.Code == "42P01" || pg.Code == "42703") {
				return nil, fmt.Errorf("masdb: %w: table %s of %s lacks (%s): is this MAS's database, migrated by MAS 0.14 or later (mas-cli database migrate)? (%s)",
					ErrSchema, tc.table, db.where, tc.columns, db.scrub(pg.Message))
			}
			return nil, db.wrap("reading the MAS database at", err)
		}
	}
	return db, nil
}

// Close closes the connections.
func (db *DB) Close() error { return db.sql.Close() }

// String names the database, its password replaced by "xxxxx".
func (db *DB) String() string { return db.where }

func (db *DB) wrap(what string, err error) error {
	return fmt.Errorf("masdb: %s %s: %s", what, db.where, db.scrub(err.Error()))
}

func (db *DB) scrub(s string) string { return db.dsn.Scrub(s) }

func (db *DB) now() time.Time {
	if db.Now != nil {
		return db.Now()
	}
	return time.Now()
}

// User is what MAS holds for one Matrix account (by localpart).
type User struct {
	Localpart string
	// PasswordHash is the newest hash ("" for none): bcrypt ($2…) when imported from Synapse by
	// syn2mas, else argon2id or pbkdf2 as MAS's passwords.schemes say. PasswordVersion is its
	// scheme version (a scheme with a secret makes the hash unverifiable elsewhere).
	PasswordHash    string
	PasswordVersion int
	Deactivated     bool
	Locked          bool
	// CompatTokens maps a device ID to the newest live access token of an unfinished
	// compatibility session (a client that logged in with /login).
	CompatTokens map[string]CompatToken
	// OAuthDevices are the device IDs of unfinished OAuth 2.0 sessions (the scope names them):
	// their tokens are short-lived and refreshed by MAS, so they cannot be carried.
	OAuthDevices []string
}

// CompatToken is a compatibility access token.
type CompatToken struct {
	Token string
	// ExpiresAt is when MAS would expire it (zero = never).
	ExpiresAt time.Time
}

// Device scopes of OAuth 2.0 sessions (crates/data-model/src/compat/device.rs).
const (
	deviceScopeStable   = "urn:matrix:client:device:"
	deviceScopeUnstable = "urn:matrix:org.matrix.msc2967.client:device:"
)

// ErrNoUser: MAS has no account with the localpart.
var ErrNoUser = errors.New("no such user in MAS")

// User reads the account with the localpart: its newest password hash, live compatibility tokens
// (unfinished session, unexpired token; the newest per device) and unfinished OAuth 2.0 devices.
func (db *DB) User(ctx context.Context, localpart string) (*User, error) {
	tx, err := db.sql.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, db.wrap("reading the MAS database at", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	u := &User{Localpart: localpart, CompatTokens: map[string]CompatToken{}}
	var id string
	var deact, locked sql.NullTime
	err = tx.QueryRowContext(ctx, `SELECT user_id::text, deactivated_at, locked_at FROM users WHERE username = $1`, localpart).Scan(&id, &deact, &locked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("masdb: %w: %s", ErrNoUser, localpart)
	}
	if err != nil {
		return nil, db.wrap("reading users of the MAS database at", err)
	}
	u.Deactivated, u.Locked = deact.Valid, locked.Valid
	err = tx.QueryRowContext(ctx, `SELECT hashed_password, version FROM user_passwords WHERE user_id = $1::uuid
		ORDER BY created_at DESC, user_password_id DESC LIMIT 1`, id).Scan(&u.PasswordHash, &u.PasswordVersion)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, db.wrap("reading user_passwords of the MAS database at", err)
	}
	now := db.now()
	rows, err := tx.QueryContext(ctx, `SELECT s.device_id, t.access_token, t.expires_at
		FROM compat_sessions s JOIN compat_access_tokens t ON t.compat_session_id = s.compat_session_id
		WHERE s.user_id = $1::uuid AND s.finished_at IS NULL AND s.device_id IS NOT NULL
		  AND (t.expires_at IS NULL OR t.expires_at > $2)
		ORDER BY s.device_id, t.created_at, t.compat_access_token_id`, id, now)
	if err != nil {
		return nil, db.wrap("reading compat_sessions of the MAS database at", err)
	}
	for rows.Next() {
		var dev, tok string
		var exp sql.NullTime
		if err := rows.Scan(&dev, &tok, &exp); err != nil {
			rows.Close()
			return nil, db.wrap("reading compat_access_tokens of the MAS database at", err)
		}
		ct := CompatToken{Token: tok}
		if exp.Valid {
			ct.ExpiresAt = exp.Time
		}
		u.CompatTokens[dev] = ct // oldest first: the newest wins
	}
	if err := rows.Close(); err != nil {
		return nil, db.wrap("reading compat_access_tokens of the MAS database at", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT array_to_string(scope_list, ' ') FROM oauth2_sessions
		WHERE user_id = $1::uuid AND finished_at IS NULL ORDER BY created_at, oauth2_session_id`, id)
	if err != nil {
		return nil, db.wrap("reading oauth2_sessions of the MAS database at", err)
	}
	seen := map[string]bool{}
	for rows.Next() {
		var scopeList string
		if err := rows.Scan(&scopeList); err != nil {
			rows.Close()
			return nil, db.wrap("reading oauth2_sessions of the MAS database at", err)
		}
		for _, s := range strings.Fields(scopeList) {
			dev, ok := strings.CutPrefix(s, deviceScopeStable)
			if !ok {
				dev, ok = strings.CutPrefix(s, deviceScopeUnstable)
			}
			if ok && dev != "" && !seen[dev] {
				seen[dev] = true
				u.OAuthDevices = append(u.OAuthDevices, dev)
			}
		}
	}
	if err := rows.Close(); err != nil {
		return nil, db.wrap("reading oauth2_sessions of the MAS database at", err)
	}
	return u, nil
}
