package main

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/internal/pgtest"
	"github.com/transition-matrix/transition-matrix/masdb/masdbtest"
	"github.com/transition-matrix/transition-matrix/synapsedb/synapsedbtest"
)

// TestImportCommandMAS imports with MAS's database: the compatibility session keeps its device
// logged in with MAS's token, the OAuth 2.0 device is named as having to sign in again, and MAS's
// password hash replaces the export's.
func TestImportCommandMAS(t *testing.T) {
	cfgPath, out, db, sim := importSetup(t)
	w := sim.World()
	env := map[string]string{"ADMIN_TOKEN": sim.AdminToken()}
	var uid, compatDev, oauthDev string
	for _, u := range w.Users[1:] {
		if !u.Deactivated && !u.Locked && len(u.Devices) >= 2 {
			uid, compatDev, oauthDev = u.ID, u.Devices[0].ID, u.Devices[1].ID
			break
		}
	}
	if uid == "" {
		t.Fatal("the world has no active user with two devices")
	}
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase(t)
	sqldb, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	ctx := context.Background()
	local := strings.TrimPrefix(strings.SplitN(uid, ":", 2)[0], "@")
	if err := masdbtest.Create(ctx, sqldb); err != nil {
		t.Fatal(err)
	}
	const hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$fromMASfromMASfromMASfromMASfromMASfromMAS"
	if err := masdbtest.AddUser(ctx, sqldb, local, hash, map[string]string{compatDev: "mct_carried_by_mas"}, []string{oauthDev}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runShim(t, env, "import", "conduit", "-config", cfgPath, "-export", out, "-db", db,
		"-synapse-db", synapsedbtest.WriteSQLite(t, w), "-mas-db", dsn)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "must sign in again (OAuth 2.0 sessions") || !strings.Contains(stdout, uid+" device "+oauthDev) {
		t.Errorf("summary does not name %s device %s:\n%s", uid, oauthDev, stdout)
	}
	if strings.Contains(stdout+stderr, "mct_carried_by_mas") || strings.Contains(stdout+stderr, pg.Password) {
		t.Error("a token or the database password was printed")
	}
	c, err := conduit.Open(db, conduit.Options{ServerName: w.ServerName, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tokens, err := c.AccessTokens(uid)
	if err != nil {
		t.Fatal(err)
	}
	if tokens[compatDev] != "mct_carried_by_mas" || tokens[oauthDev] != "" {
		t.Errorf("tokens of %s: %v", uid, tokens)
	}
	u, ok, err := c.User(uid)
	if err != nil || !ok || u.PasswordHash != hash {
		t.Errorf("password of %s: %q %v %v", uid, u.PasswordHash, ok, err)
	}

	// A DSN that is not PostgreSQL: refused with the fix.
	code, _, stderr = runShim(t, env, "import", "conduit", "-config", cfgPath, "-export", out, "-db", db, "-mas-db", "/var/lib/mas.sqlite")
	if code != 1 || !strings.Contains(stderr, "postgres:// URL") {
		t.Errorf("non-PostgreSQL -mas-db: exit %d, %s", code, stderr)
	}
}
