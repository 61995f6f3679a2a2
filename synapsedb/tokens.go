package synapsedb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
)

// Token is an access token that keeps a device logged in.
type Token struct {
	UserID, DeviceID, Token string
	// ValidUntilMS is when the token expires (ms since the epoch; 0 = never).
	ValidUntilMS int64
}

// OneTimeKey is an unclaimed one-time key of a device (e2e_one_time_keys_json).
type OneTimeKey struct {
	UserID, DeviceID string
	Algorithm        string          // "signed_curve25519"
	KeyID            string          // "AAAAAQ"
	KeyJSON          json.RawMessage // the signed key object as uploaded
}

// FallbackKey is a device's fallback key (e2e_fallback_keys_json); Used means a claim handed it out.
type FallbackKey struct {
	UserID, DeviceID string
	Algorithm        string
	KeyID            string
	KeyJSON          json.RawMessage
	Used             bool
}

// liveDevice joins a table aliased t to the devices and users it belongs to, keeping only rows of
// an existing, visible device of an account that is not deactivated. Synapse keeps cross-signing
// keys as hidden devices; no session or one-time key belongs to them.
const liveDevice = `
	JOIN users u ON u.name = t.user_id
	JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
	WHERE u.deactivated = 0 AND (d.hidden IS NULL OR d.hidden = FALSE)`

// tokenQuery selects the tokens that log a device in: not a puppet (login-as) token, with a
// device, not expired (valid_until_ms > $1 or null), of an active user.
const tokenQuery = `SELECT t.user_id, t.device_id, t.token, COALESCE(t.valid_until_ms, 0)
	FROM access_tokens t` + liveDevice + `
	AND t.puppets_user_id IS NULL AND t.device_id IS NOT NULL
	AND (t.valid_until_ms IS NULL OR t.valid_until_ms > $1)`

const oneTimeKeyQuery = `SELECT t.user_id, t.device_id, t.algorithm, t.key_id, t.key_json
	FROM e2e_one_time_keys_json t` + liveDevice

const fallbackKeyQuery = `SELECT t.user_id, t.device_id, t.algorithm, t.key_id, t.key_json, t.used
	FROM e2e_fallback_keys_json t` + liveDevice

// Tokens calls fn for every access token that keeps a device logged in, ordered by user, device
// and token age (oldest first), streaming the rows. Left out: login-as (puppet) tokens, tokens
// without a device or whose device is gone, expired tokens, and tokens of deactivated users.
// An error from fn stops the walk and is returned.
func (db *DB) Tokens(ctx context.Context, fn func(Token) error) error {
	return db.each(ctx, "access_tokens", tokenQuery+db.orderBy("t.user_id", "t.device_id", "t.id"),
		[]any{db.now().UnixMilli()}, func(rows *sql.Rows) error {
			var t Token
			if err := rows.Scan(&t.UserID, &t.DeviceID, &t.Token, &t.ValidUntilMS); err != nil {
				return err
			}
			return fn(t)
		})
}

// UserTokens returns Tokens for one user, in the same order.
func (db *DB) UserTokens(ctx context.Context, userID string) ([]Token, error) {
	var out []Token
	err := db.each(ctx, "access_tokens", tokenQuery+` AND t.user_id = $2`+db.orderBy("t.device_id", "t.id"),
		[]any{db.now().UnixMilli(), userID}, func(rows *sql.Rows) error {
			var t Token
			if err := rows.Scan(&t.UserID, &t.DeviceID, &t.Token, &t.ValidUntilMS); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	return out, err
}

// OneTimeKeys calls fn for every unclaimed one-time key of an existing device of an active user,
// ordered by user, device, algorithm and key ID, streaming the rows.
func (db *DB) OneTimeKeys(ctx context.Context, fn func(OneTimeKey) error) error {
	return db.each(ctx, "e2e_one_time_keys_json", oneTimeKeyQuery+db.orderBy("t.user_id", "t.device_id", "t.algorithm", "t.key_id"),
		nil, func(rows *sql.Rows) error {
			k, err := scanOneTimeKey(rows)
			if err != nil {
				return err
			}
			return fn(k)
		})
}

// UserOneTimeKeys returns OneTimeKeys for one user, in the same order.
func (db *DB) UserOneTimeKeys(ctx context.Context, userID string) ([]OneTimeKey, error) {
	var out []OneTimeKey
	err := db.each(ctx, "e2e_one_time_keys_json", oneTimeKeyQuery+` AND t.user_id = $1`+db.orderBy("t.device_id", "t.algorithm", "t.key_id"),
		[]any{userID}, func(rows *sql.Rows) error {
			k, err := scanOneTimeKey(rows)
			out = append(out, k)
			return err
		})
	return out, err
}

func scanOneTimeKey(rows *sql.Rows) (OneTimeKey, error) {
	var k OneTimeKey
	var js string
	err := rows.Scan(&k.UserID, &k.DeviceID, &k.Algorithm, &k.KeyID, &js)
	if err == nil {
		k.KeyJSON, err = rawJSON(js, "one-time key", k.UserID, k.DeviceID, k.KeyID)
	}
	return k, err
}

// FallbackKeys calls fn for the fallback keys of existing devices of active users (used ones
// included: a client keeps a used fallback key until it uploads a new one), ordered by user,
// device and algorithm, streaming the rows.
func (db *DB) FallbackKeys(ctx context.Context, fn func(FallbackKey) error) error {
	return db.each(ctx, "e2e_fallback_keys_json", fallbackKeyQuery+db.orderBy("t.user_id", "t.device_id", "t.algorithm"),
		nil, func(rows *sql.Rows) error {
			k, err := scanFallbackKey(rows)
			if err != nil {
				return err
			}
			return fn(k)
		})
}

// UserFallbackKeys returns FallbackKeys for one user, in the same order.
func (db *DB) UserFallbackKeys(ctx context.Context, userID string) ([]FallbackKey, error) {
	var out []FallbackKey
	err := db.each(ctx, "e2e_fallback_keys_json", fallbackKeyQuery+` AND t.user_id = $1`+db.orderBy("t.device_id", "t.algorithm"),
		[]any{userID}, func(rows *sql.Rows) error {
			k, err := scanFallbackKey(rows)
			out = append(out, k)
			return err
		})
	return out, err
}

func scanFallbackKey(rows *sql.Rows) (FallbackKey, error) {
	var k FallbackKey
	var js string
	var used any // PostgreSQL: boolean; SQLite: 0/1
	err := rows.Scan(&k.UserID, &k.DeviceID, &k.Algorithm, &k.KeyID, &js, &used)
	if err == nil {
		k.Used, err = truthy(used)
	}
	if err == nil {
		k.KeyJSON, err = rawJSON(js, "fallback key", k.UserID, k.DeviceID, k.KeyID)
	}
	return k, err
}

func rawJSON(s, what, user, device, keyID string) (json.RawMessage, error) {
	if !json.Valid([]byte(s)) {
		return nil, fmt.Errorf("%s %s of %s device %s is not valid JSON", what, keyID, user, device)
	}
	return json.RawMessage(s), nil
}

func truthy(v any) (bool, error) {
	switch b := v.(type) {
	case bool:
		return b, nil
	case int64:
		return b != 0, nil
	case nil:
		return false, nil
	}
	return false, fmt.Errorf("boolean column holds %T %v", v, v)
}

// each runs query in a read-only transaction and calls fn for every row.
func (db *DB) each(ctx context.Context, table, query string, args []any, fn func(*sql.Rows) error) error {
	if db.backend == SQLite {
		query = sqlitePlaceholders(query)
	}
	tx, err := db.sql.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return db.connectError(err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return db.readError(table, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return db.readError(table, err)
	}
	return nil
}

func (db *DB) readError(table string, err error) error {
	if isMissingTable(err) {
		return fmt.Errorf("synapsedb: Synapse database at %s has no table %s: is this Synapse's database?", db.where, table)
	}
	return db.wrap("reading table "+table+" of the Synapse database at", err)
}

// orderBy sorts by the columns in byte order on both backends (Synapse requires a C-collated
// PostgreSQL database, but a restored copy may not be; integer columns are unaffected).
func (db *DB) orderBy(cols ...string) string {
	if db.backend == Postgres {
		for i, c := range cols {
			if c != "t.id" {
				cols[i] = c + ` COLLATE "C"`
			}
		}
	}
	return " ORDER BY " + strings.Join(cols, ", ")
}

// sqlitePlaceholders rewrites PostgreSQL's $1, $2 as SQLite's ?1, ?2.
func sqlitePlaceholders(q string) string {
	b := []byte(q)
	for i := range b {
		if b[i] == '$' && i+1 < len(b) && b[i+1] >= '0' && b[i+1] <= '9' {
			b[i] = '?'
		}
	}
	return string(b)
}
