package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestStartServesAFreshDatabase(t *testing.T) {
	s := Start(t)
	dsn := s.CreateDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var collate string
	var n int
	if err := conn.QueryRow(ctx, "SELECT datcollate FROM pg_database WHERE datname = current_database()").Scan(&collate); err != nil {
		t.Fatal(err)
	}
	if collate != "C" {
		t.Errorf("collation %q, want C (Synapse requires it)", collate)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 0 {
		t.Errorf("fresh database has %d tables (%v)", n, err)
	}
	bad := *s
	bad.Password = "wrong"
	if c, err := pgx.Connect(ctx, bad.DSN("postgres")); err == nil {
		c.Close(ctx)
		t.Error("a wrong password was accepted: the server must check passwords")
	}
}
