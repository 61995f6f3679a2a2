package masdb_test

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"

	"github.com/transition-matrix/transition-matrix/internal/pgtest"
	"github.com/transition-matrix/transition-matrix/masdb"
	"github.com/transition-matrix/transition-matrix/masdb/masdbtest"
)

const (
	alice = "00000000-0000-0000-0000-00000000000a"
	bob   = "00000000-0000-0000-0000-00000000000b"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

var rows = []string{
	`INSERT INTO users VALUES ('` + alice + `', 'alice', '2025-01-01Z', NULL, FALSE, FALSE, NULL)`,
	`INSERT INTO users VALUES ('` + bob + `', 'bob', '2025-01-01Z', '2026-01-01Z', FALSE, FALSE, '2026-02-01Z')`,
	// alice's password: the bcrypt hash syn2mas brought from Synapse, then a newer argon2id one.
	`INSERT INTO user_passwords VALUES ('00000000-0000-0000-0001-000000000001', '` + alice + `', '$2b$12$oldoldoldoldoldoldoldo', '2025-01-01Z', 1, NULL)`,
	`INSERT INTO user_passwords VALUES ('00000000-0000-0000-0001-000000000002', '` + alice + `', '$argon2id$v=19$m=19456,t=2,p=1$new', '2026-06-01Z', 2, '00000000-0000-0000-0001-000000000001')`,
	// Compatibility sessions: a live one with two tokens, one with only an expired token, a
	// finished one, a deviceless one.
	`INSERT INTO compat_sessions (compat_session_id, user_id, device_id, created_at) VALUES ('00000000-0000-0000-0002-000000000001', '` + alice + `', 'PHONE', '2025-02-01Z')`,
	`INSERT INTO compat_access_tokens VALUES ('00000000-0000-0000-0003-000000000001', '00000000-0000-0000-0002-000000000001', 'mct_old', '2025-02-01Z', NULL)`,
	`INSERT INTO compat_access_tokens VALUES ('00000000-0000-0000-0003-000000000002', '00000000-0000-0000-0002-000000000001', 'mct_new', '2026-11-01Z', '2027-01-01Z')`,
	`INSERT INTO compat_sessions (compat_session_id, user_id, device_id, created_at) VALUES ('00000000-0000-0000-0002-000000000002', '` + alice + `', 'OLDTAB', '2025-02-01Z')`,
	`INSERT INTO compat_access_tokens VALUES ('00000000-0000-0000-0003-000000000003', '00000000-0000-0000-0002-000000000002', 'mct_expired', '2025-02-01Z', '2025-03-01Z')`,
	`INSERT INTO compat_sessions (compat_session_id, user_id, device_id, created_at, finished_at) VALUES ('00000000-0000-0000-0002-000000000003', '` + alice + `', 'GONE', '2025-02-01Z', '2025-05-01Z')`,
	`INSERT INTO compat_access_tokens VALUES ('00000000-0000-0000-0003-000000000004', '00000000-0000-0000-0002-000000000003', 'mct_finished', '2025-02-01Z', NULL)`,
	`INSERT INTO compat_sessions (compat_session_id, user_id, device_id, created_at) VALUES ('00000000-0000-0000-0002-000000000004', '` + alice + `', NULL, '2025-02-01Z')`,
	`INSERT INTO compat_access_tokens VALUES ('00000000-0000-0000-0003-000000000005', '00000000-0000-0000-0002-000000000004', 'mct_nodevice', '2025-02-01Z', NULL)`,
	// OAuth 2.0 sessions: stable and unstable device scopes (the same device twice), a finished one.
	`INSERT INTO oauth2_sessions (oauth2_session_id, oauth2_client_id, created_at, user_id, scope_list) VALUES ('00000000-0000-0000-0004-000000000001', gen_random_uuid(), '2026-01-01Z', '` + alice + `',
		ARRAY['openid', 'urn:matrix:client:api:*', 'urn:matrix:client:device:LAPTOP', 'urn:matrix:org.matrix.msc2967.client:device:LAPTOP'])`,
	`INSERT INTO oauth2_sessions (oauth2_session_id, oauth2_client_id, created_at, user_id, scope_list) VALUES ('00000000-0000-0000-0004-000000000002', gen_random_uuid(), '2026-01-02Z', '` + alice + `',
		ARRAY['urn:matrix:org.matrix.msc2967.client:api:*', 'urn:matrix:org.matrix.msc2967.client:device:TABLET'])`,
	`INSERT INTO oauth2_sessions (oauth2_session_id, oauth2_client_id, created_at, finished_at, user_id, scope_list) VALUES ('00000000-0000-0000-0004-000000000003', gen_random_uuid(), '2026-01-03Z', '2026-01-04Z', '` + alice + `',
		ARRAY['urn:matrix:client:device:SOLD'])`,
}

func setup(t *testing.T, statements ...[]string) string {
	t.Helper()
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, list := range statements {
		for _, s := range list {
			if _, err := db.Exec(s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	return dsn
}

func TestUserFromMASTables(t *testing.T) {
	dsn := setup(t, masdbtest.Schema, rows)
	ctx := context.Background()
	db, err := masdb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.Now = func() time.Time { return now }
	u, err := db.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := &masdb.User{Localpart: "alice", PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$new", PasswordVersion: 2,
		CompatTokens: map[string]masdb.CompatToken{"PHONE": {Token: "mct_new", ExpiresAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}},
		OAuthDevices: []string{"LAPTOP", "TABLET"}}
	u.CompatTokens["PHONE"] = masdb.CompatToken{Token: u.CompatTokens["PHONE"].Token, ExpiresAt: u.CompatTokens["PHONE"].ExpiresAt.UTC()}
	if !reflect.DeepEqual(u, want) {
		t.Errorf("alice:\n got %+v\nwant %+v", u, want)
	}
	b, err := db.User(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !b.Deactivated || !b.Locked || b.PasswordHash != "" || len(b.CompatTokens) != 0 || len(b.OAuthDevices) != 0 {
		t.Errorf("bob: %+v", b)
	}
	if _, err := db.User(ctx, "nobody"); !errors.Is(err, masdb.ErrNoUser) {
		t.Errorf("unknown user: %v", err)
	}
	if strings.Contains(db.String(), pgPassword(dsn)) {
		t.Errorf("String shows the password: %s", db.String())
	}
}

func pgPassword(dsn string) string {
	_, rest, _ := strings.Cut(dsn, "://")
	cred, _, _ := strings.Cut(rest, "@")
	_, p, _ := strings.Cut(cred, ":")
	return p
}

func TestOpenRefusals(t *testing.T) {
	ctx := context.Background()
	if _, err := masdb.Open(ctx, "/var/lib/mas.db"); !errors.Is(err, masdb.ErrNotPostgres) || !strings.Contains(err.Error(), "postgres:// URL") {
		t.Errorf("SQLite path: %v", err)
	}
	// A database without MAS's tables (here: an older MAS without deactivated_at).
	old := append([]string(nil), masdbtest.Schema...)
	old[0] = strings.Replace(old[0], ",\n\t\tdeactivated_at TIMESTAMPTZ", "", 1)
	dsn := setup(t, old)
	_, err := masdb.Open(ctx, dsn)
	if !errors.Is(err, masdb.ErrSchema) || !strings.Contains(err.Error(), "mas-cli database migrate") || !strings.Contains(err.Error(), "users") {
		t.Errorf("old schema: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), pgPassword(dsn)) {
		t.Errorf("error shows the password: %v", err)
	}
}
