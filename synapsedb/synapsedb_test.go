package synapsedb_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/pgtest"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/synapsedb"
	"github.com/transition-matrix/transition-matrix/synapsedb/synapsedbtest"
)

var (
	worldOnce sync.Once
	testW     *world.World
	worldErr  error
)

func sharedWorld(t testing.TB) *world.World {
	t.Helper()
	worldOnce.Do(func() { testW, worldErr = world.Generate(world.Options{Seed: 42, Rooms: -1, MessagesPerRoom: 3}) })
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	return testW
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func open(t testing.TB, dsn string) *synapsedb.DB {
	t.Helper()
	db, err := synapsedb.Open(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// contents is everything a DB returns, streamed and per user.
type contents struct {
	Tokens       []synapsedb.Token
	OneTimeKeys  []synapsedb.OneTimeKey
	FallbackKeys []synapsedb.FallbackKey
}

func readAll(t *testing.T, db *synapsedb.DB) contents {
	t.Helper()
	ctx := ctxT(t)
	var c contents
	if err := db.Tokens(ctx, func(tok synapsedb.Token) error { c.Tokens = append(c.Tokens, tok); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.OneTimeKeys(ctx, func(k synapsedb.OneTimeKey) error { c.OneTimeKeys = append(c.OneTimeKeys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.FallbackKeys(ctx, func(k synapsedb.FallbackKey) error { c.FallbackKeys = append(c.FallbackKeys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	return c
}

func wantContents(w *world.World) contents {
	return contents{synapsedbtest.Tokens(w), synapsedbtest.OneTimeKeys(w), synapsedbtest.FallbackKeys(w)}
}

func TestSQLiteAndPostgresReturnTheWorld(t *testing.T) {
	w := sharedWorld(t)
	want := wantContents(w)
	checkWorldShape(t, w, want)

	lite := open(t, synapsedbtest.WriteSQLite(t, w))
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase(t)
	synapsedbtest.WritePostgres(t, dsn, w)
	pgdb := open(t, dsn)

	got := map[string]contents{}
	for _, db := range []*synapsedb.DB{lite, pgdb} {
		c := readAll(t, db)
		got[db.Backend()] = c
		compare(t, db.Backend(), c, want)
		checkPerUser(t, db, w, want)
	}
	if !reflect.DeepEqual(got[synapsedb.SQLite], got[synapsedb.Postgres]) {
		t.Error("PostgreSQL and SQLite return different results")
	}
	if pgdb.Backend() != synapsedb.Postgres || lite.Backend() != synapsedb.SQLite {
		t.Errorf("backends %s, %s", pgdb.Backend(), lite.Backend())
	}
	if strings.Contains(pgdb.String(), pg.Password) {
		t.Errorf("String() shows the password: %s", pgdb.String())
	}
}

// checkWorldShape makes sure the world holds what the exclusion tests rely on.
func checkWorldShape(t *testing.T, w *world.World, want contents) {
	t.Helper()
	var expiring, used bool
	for _, tok := range want.Tokens {
		expiring = expiring || tok.ValidUntilMS > 0
	}
	for _, k := range want.FallbackKeys {
		used = used || k.Used
	}
	if !expiring || !used || len(want.OneTimeKeys) == 0 || len(want.Tokens) < 10 {
		t.Fatalf("world lacks an expiring token (%v), a used fallback key (%v) or keys: %d tokens, %d one-time keys",
			expiring, used, len(want.Tokens), len(want.OneTimeKeys))
	}
}

func compare(t *testing.T, backend string, got, want contents) {
	t.Helper()
	for _, tok := range got.Tokens {
		if strings.HasPrefix(tok.Token, "syt_noise_") {
			t.Errorf("%s: noise token returned: %+v", backend, tok)
		}
	}
	if !reflect.DeepEqual(got.Tokens, want.Tokens) {
		t.Errorf("%s: tokens\n got %+v\nwant %+v", backend, got.Tokens, want.Tokens)
	}
	if len(got.OneTimeKeys) != len(want.OneTimeKeys) {
		t.Errorf("%s: %d one-time keys, want %d", backend, len(got.OneTimeKeys), len(want.OneTimeKeys))
	}
	for i := range min(len(got.OneTimeKeys), len(want.OneTimeKeys)) {
		g, w := got.OneTimeKeys[i], want.OneTimeKeys[i]
		if g.UserID != w.UserID || g.DeviceID != w.DeviceID || g.Algorithm != w.Algorithm || g.KeyID != w.KeyID || !jsonEqual(g.KeyJSON, w.KeyJSON) {
			t.Errorf("%s: one-time key %d\n got %+v\nwant %+v", backend, i, g, w)
		}
	}
	if len(got.FallbackKeys) != len(want.FallbackKeys) {
		t.Errorf("%s: %d fallback keys, want %d", backend, len(got.FallbackKeys), len(want.FallbackKeys))
	}
	for i := range min(len(got.FallbackKeys), len(want.FallbackKeys)) {
		g, w := got.FallbackKeys[i], want.FallbackKeys[i]
		if g.UserID != w.UserID || g.DeviceID != w.DeviceID || g.Algorithm != w.Algorithm || g.KeyID != w.KeyID || g.Used != w.Used || !jsonEqual(g.KeyJSON, w.KeyJSON) {
			t.Errorf("%s: fallback key %d\n got %+v\nwant %+v", backend, i, g, w)
		}
	}
}

func checkPerUser(t *testing.T, db *synapsedb.DB, w *world.World, want contents) {
	t.Helper()
	ctx := ctxT(t)
	var tokens []synapsedb.Token
	var otks []synapsedb.OneTimeKey
	var fbs []synapsedb.FallbackKey
	for _, u := range w.Users {
		ts, err := db.UserTokens(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range ts {
			if tok.UserID != u.ID {
				t.Errorf("%s: UserTokens(%s) returned a token of %s", db.Backend(), u.ID, tok.UserID)
			}
		}
		if u.Deactivated && len(ts) > 0 {
			t.Errorf("%s: deactivated %s has tokens %+v", db.Backend(), u.ID, ts)
		}
		tokens = append(tokens, ts...)
		ks, err := db.UserOneTimeKeys(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		otks = append(otks, ks...)
		fs, err := db.UserFallbackKeys(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		fbs = append(fbs, fs...)
	}
	byUser := func(ts []synapsedb.Token) map[string]int {
		m := map[string]int{}
		for _, t := range ts {
			m[t.UserID+" "+t.DeviceID+" "+t.Token]++
		}
		return m
	}
	if !reflect.DeepEqual(byUser(tokens), byUser(want.Tokens)) {
		t.Errorf("%s: per-user tokens differ from the world", db.Backend())
	}
	if len(otks) != len(want.OneTimeKeys) || len(fbs) != len(want.FallbackKeys) {
		t.Errorf("%s: per-user keys: %d one-time, %d fallback; want %d, %d", db.Backend(), len(otks), len(fbs), len(want.OneTimeKeys), len(want.FallbackKeys))
	}
	if ts, err := db.UserTokens(ctx, "@nobody:"+w.ServerName); err != nil || len(ts) != 0 {
		t.Errorf("unknown user: %v, %v", ts, err)
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

func TestExpiryFollowsTheClock(t *testing.T) {
	w := sharedWorld(t)
	db := open(t, "sqlite://"+synapsedbtest.WriteSQLite(t, w))
	var expiring synapsedb.Token
	for _, tok := range synapsedbtest.Tokens(w) {
		if tok.ValidUntilMS > 0 {
			expiring = tok
		}
	}
	db.Now = func() time.Time { return time.UnixMilli(expiring.ValidUntilMS) }
	got := readAll(t, db).Tokens
	for _, tok := range got {
		if tok.Token == expiring.Token {
			t.Fatalf("token valid until %d returned at that instant", expiring.ValidUntilMS)
		}
	}
	if len(got) != len(synapsedbtest.Tokens(w))-1 {
		t.Errorf("%d tokens, want all but the expired one (%d)", len(got), len(synapsedbtest.Tokens(w))-1)
	}
	db.Now = func() time.Time { return time.UnixMilli(synapsedbtest.ExpiredAt - 1) }
	got = readAll(t, db).Tokens
	if len(got) != len(synapsedbtest.Tokens(w))+1 {
		t.Errorf("before the noise token expired: %d tokens, want %d", len(got), len(synapsedbtest.Tokens(w))+1)
	}
}

func TestCallbackErrorStopsTheWalk(t *testing.T) {
	db := open(t, "file:"+synapsedbtest.WriteSQLite(t, sharedWorld(t)))
	stop := os.ErrClosed
	n := 0
	err := db.Tokens(ctxT(t), func(synapsedb.Token) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("error %v after %d calls, want %v after 1", err, n, stop)
	}
}

func TestSQLiteIsOpenedReadOnly(t *testing.T) {
	path := synapsedbtest.WriteSQLite(t, sharedWorld(t))
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db := open(t, path)
	readAll(t, db)
	db.Close()
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Error("reading changed the SQLite file")
	}
	if _, err := os.Stat(path + "-journal"); err == nil {
		t.Error("a rollback journal was left beside the file")
	}
}

func TestRefusesWhatIsNotSynapse(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()

	other := filepath.Join(dir, "other.db")
	db := synapsedbtest.OpenSQLite(t, other)
	if _, err := db.Exec("CREATE TABLE users (name TEXT, deactivated SMALLINT)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	wantErr(t, other, "has no table devices: is this Synapse's database?")

	old := filepath.Join(dir, "old.db")
	db = synapsedbtest.OpenSQLite(t, old)
	for _, s := range []string{
		"CREATE TABLE users (name TEXT, deactivated SMALLINT)",
		"CREATE TABLE devices (user_id TEXT, device_id TEXT, hidden BOOLEAN)",
		"CREATE TABLE access_tokens (id BIGINT, user_id TEXT, device_id TEXT, token TEXT, valid_until_ms BIGINT)",
	} {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	wantErr(t, old, "table access_tokens of the Synapse database at "+old+" lacks a column")

	good := synapsedbtest.WriteSQLite(t, sharedWorld(t))
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.db")
	if err := os.WriteFile(truncated, data[:len(data)/3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := synapsedb.Open(ctx, truncated); err == nil {
		t.Error("a truncated SQLite file was accepted")
	} else if !strings.Contains(err.Error(), truncated) {
		t.Errorf("error does not name the file: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database\n", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	wantErr(t, garbage, "damaged or not an SQLite database")
	wantErr(t, filepath.Join(dir, "missing.db"), "no such file or directory")
	wantErr(t, dir, "is a directory")
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); err == nil {
		t.Error("opening a missing file created it")
	}
	wantErr(t, "", "no Synapse database given")
}

func TestPostgresFailuresAreNamed(t *testing.T) {
	pg := pgtest.Start(t)
	empty := pg.CreateDatabase(t)
	wantErr(t, empty, "has no table users: is this Synapse's database?")

	dsn := pg.CreateDatabase(t)
	synapsedbtest.WritePostgres(t, dsn, sharedWorld(t))
	wrong := strings.Replace(dsn, pg.Password, "s3cret-wrong-pw", 1)
	err := wantErr(t, wrong, "refused the login")
	if strings.Contains(err.Error(), "s3cret-wrong-pw") || strings.Contains(err.Error(), pg.Password) {
		t.Errorf("the error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), "xxxxx@127.0.0.1") {
		t.Errorf("the error does not name the server (password redacted): %v", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	unreachable := "postgres://synapse:topsecret@127.0.0.1:" + strconv.Itoa(port) + "/synapse?sslmode=disable&connect_timeout=5"
	err = wantErr(t, unreachable, "cannot reach the Synapse database at postgres://synapse:xxxxx@127.0.0.1:"+strconv.Itoa(port))
	if strings.Contains(err.Error(), "topsecret") {
		t.Errorf("the error shows the password: %v", err)
	}
	wantErr(t, strings.Replace(dsn, "/db_", "/nodb_", 1), "does not exist")

	// The session is read-only: even a write slipped past the API is refused.
	db := open(t, dsn)
	if db.String() == dsn {
		t.Errorf("String() is the raw DSN")
	}
	raw, err := sql.Open("pgx", dsn+"&default_transaction_read_only=on")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec("DELETE FROM access_tokens"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("a write in a read-only session: %v", err)
	}
}

func wantErr(t *testing.T, dsn, substr string) error {
	t.Helper()
	db, err := synapsedb.Open(ctxT(t), dsn)
	if err == nil {
		db.Close()
		t.Fatalf("Open(%s) succeeded, want an error containing %q", dsn, substr)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Errorf("Open(%s): %v\nwant it to contain %q", dsn, err, substr)
	}
	return err
}
