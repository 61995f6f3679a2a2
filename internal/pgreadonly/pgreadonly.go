// Package pgreadonly opens a PostgreSQL database given as a postgres:// URL for reading only, and
// keeps the URL's password out of every message that names the database.
package pgreadonly

import (
	"database/sql"
	"errors"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// ErrInvalidURL is returned by ParseDSN for text that is not a URL; the text is not repeated in
// the error because it may hold a password.
var ErrInvalidURL = errors.New("the database DSN is not a valid URL (its text is not repeated here: it may hold a password)")

// DSN is a database URL reduced to what may be shown: its redacted form and a scrubber for its password.
type DSN struct {
	Redacted string // the URL with its password replaced by "xxxxx"
	password string
}

// ParseDSN splits dsn into its redacted form and its password.
func ParseDSN(dsn string) (DSN, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return DSN{}, ErrInvalidURL
	}
	d := DSN{Redacted: u.Redacted()}
	if p, ok := u.User.Password(); ok {
		d.password = p
	}
	return d, nil
}

// Scrub replaces the password, plain or query-escaped, in s by "xxxxx".
func (d DSN) Scrub(s string) string {
	if d.password == "" {
		return s
	}
	s = strings.ReplaceAll(s, d.password, "xxxxx")
	if esc := url.QueryEscape(d.password); esc != d.password {
		s = strings.ReplaceAll(s, esc, "xxxxx")
	}
	return s
}

// Open returns a pool of at most two connections to dsn whose sessions are read-only
// (default_transaction_read_only) and named transition-matrix; it does not connect yet.
func Open(dsn string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	cfg.RuntimeParams["application_name"] = "transition-matrix"
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(2)
	return db, nil
}
