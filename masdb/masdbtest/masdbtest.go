// Package masdbtest creates the tables of the Matrix Authentication Service that package masdb
// reads, for tests, and adds accounts and sessions to them.
package masdbtest

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Schema is MAS's tables as its migrations leave them (crates/storage-pg/migrations: init
// 20221018142001, password_schemes 20221213145242, user_lock 20230728154304,
// oauth2_sessions_user_id_scope_list 20230829092920, oauth2_token_expiration 20230911091636,
// allow_deviceless_compat_sessions 20250114135939, user_deactivated_at 20250311093145), limited to
// the columns and constraints these tests need; written for the tests from those facts.
var Schema = []string{
	`CREATE TABLE users (user_id UUID PRIMARY KEY, username TEXT NOT NULL UNIQUE, created_at TIMESTAMPTZ NOT NULL,
		locked_at TIMESTAMPTZ, can_request_admin BOOLEAN NOT NULL DEFAULT FALSE, is_guest BOOLEAN NOT NULL DEFAULT FALSE,
		deactivated_at TIMESTAMPTZ)`,
	`CREATE TABLE user_passwords (user_password_id UUID PRIMARY KEY, user_id UUID NOT NULL REFERENCES users (user_id),
		hashed_password TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL, version INTEGER NOT NULL,
		upgraded_from_id UUID REFERENCES user_passwords (user_password_id) ON DELETE SET NULL)`,
	`CREATE TABLE compat_sessions (compat_session_id UUID PRIMARY KEY, user_id UUID NOT NULL REFERENCES users (user_id),
		device_id TEXT, created_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, is_synapse_admin BOOLEAN NOT NULL DEFAULT FALSE,
		last_active_at TIMESTAMPTZ, last_active_ip INET, user_agent TEXT, human_name TEXT)`,
	`CREATE TABLE compat_access_tokens (compat_access_token_id UUID PRIMARY KEY,
		compat_session_id UUID NOT NULL REFERENCES compat_sessions (compat_session_id),
		access_token TEXT NOT NULL UNIQUE, created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ)`,
	`CREATE TABLE oauth2_sessions (oauth2_session_id UUID PRIMARY KEY, user_session_id UUID, oauth2_client_id UUID NOT NULL,
		created_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, user_id UUID REFERENCES users (user_id) ON DELETE CASCADE,
		scope_list TEXT[] NOT NULL, last_active_at TIMESTAMPTZ, last_active_ip INET, user_agent TEXT, human_name TEXT)`,
}

// Create runs Schema on db (PostgreSQL).
func Create(ctx context.Context, db *sql.DB) error {
	for _, s := range Schema {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("masdbtest: %s: %w", strings.Fields(s)[2], err)
		}
	}
	return nil
}

// AddUser inserts an account with a password hash ("" for none), a live compatibility session
// with token for each device of compat, and an unfinished OAuth 2.0 session for each device of
// oauth; IDs are drawn by PostgreSQL.
func AddUser(ctx context.Context, db *sql.DB, localpart, passwordHash string, compat map[string]string, oauth []string) error {
	var id string
	if err := db.QueryRowContext(ctx, `INSERT INTO users (user_id, username, created_at) VALUES (gen_random_uuid(), $1, now()) RETURNING user_id::text`, localpart).Scan(&id); err != nil {
		return fmt.Errorf("masdbtest: user %s: %w", localpart, err)
	}
	if passwordHash != "" {
		if _, err := db.ExecContext(ctx, `INSERT INTO user_passwords VALUES (gen_random_uuid(), $1::uuid, $2, now(), 1, NULL)`, id, passwordHash); err != nil {
			return fmt.Errorf("masdbtest: password of %s: %w", localpart, err)
		}
	}
	for dev, tok := range compat {
		var sid string
		if err := db.QueryRowContext(ctx, `INSERT INTO compat_sessions (compat_session_id, user_id, device_id, created_at) VALUES (gen_random_uuid(), $1::uuid, $2, now()) RETURNING compat_session_id::text`, id, dev).Scan(&sid); err != nil {
			return fmt.Errorf("masdbtest: compat session of %s: %w", localpart, err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO compat_access_tokens VALUES (gen_random_uuid(), $1::uuid, $2, now(), NULL)`, sid, tok); err != nil {
			return fmt.Errorf("masdbtest: compat token of %s: %w", localpart, err)
		}
	}
	for _, dev := range oauth {
		if _, err := db.ExecContext(ctx, `INSERT INTO oauth2_sessions (oauth2_session_id, oauth2_client_id, created_at, user_id, scope_list)
			VALUES (gen_random_uuid(), gen_random_uuid(), now(), $1::uuid, ARRAY['urn:matrix:client:api:*', 'urn:matrix:client:device:' || $2])`, id, dev); err != nil {
			return fmt.Errorf("masdbtest: OAuth 2.0 session of %s: %w", localpart, err)
		}
	}
	return nil
}
