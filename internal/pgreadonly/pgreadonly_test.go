package pgreadonly

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/pgtest"
)

func TestParseDSNScrubsThePassword(t *testing.T) {
	d, err := ParseDSN("postgres://u:p%40ss%20w@127.0.0.1:5432/db")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(d.Redacted, "p%40ss") || !strings.Contains(d.Redacted, "u:xxxxx@127.0.0.1") {
		t.Fatalf("Redacted = %q, want the password replaced by xxxxx", d.Redacted)
	}
	msg := d.Scrub("login failed for p@ss w, given as p%40ss+w")
	if msg != "login failed for xxxxx, given as xxxxx" {
		t.Fatalf("Scrub = %q, want both forms of the password replaced", msg)
	}
	if _, err := ParseDSN("postgres://u:secret@[::1"); !errors.Is(err, ErrInvalidURL) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("ParseDSN of a bad URL = %v, want ErrInvalidURL without the text", err)
	}
}

func TestOpenIsReadOnly(t *testing.T) {
	dsn := pgtest.Start(t).CreateDatabase(t)
	db, err := Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	var ro, app string
	if err := db.QueryRowContext(ctx, "SELECT current_setting('default_transaction_read_only'), current_setting('application_name')").Scan(&ro, &app); err != nil {
		t.Fatal(err)
	}
	if ro != "on" || app != "transition-matrix" {
		t.Fatalf("session read_only=%q application_name=%q, want on and transition-matrix", ro, app)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (x int)"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("CREATE TABLE = %v, want a read-only transaction error", err)
	}
}
