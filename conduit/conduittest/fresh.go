// Package conduittest builds Conduit databases for tests (what Conduit's first start writes,
// without running Conduit) on either backend, and changes them behind Conduit's back.
package conduittest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/rocksdbkv"
	"github.com/transition-matrix/transition-matrix/internal/tb"
)

// templates caches one fresh database per backend, server name and version, so that tests copy
// files instead of creating 86 tables each time.
var templates sync.Map // "<backend> <version> <server>" → file name → bytes

// FreshDB creates a fresh Conduit database of the given version in a new temporary directory and
// returns the directory, on the backend Backend names. Databases of one test binary with the same
// backend, server name and version are copies of one result (same admin room and keypair).
func FreshDB(t tb.TB, serverName string, version int) string {
	t.Helper()
	return FreshDBOn(t, Backend(t), serverName, version)
}

// FreshDBOn is FreshDB on a named backend (conduit.BackendSQLite or conduit.BackendRocksDB).
func FreshDBOn(t tb.TB, backend, serverName string, version int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "conduit")
	key := fmt.Sprint(backend, " ", version, " ", serverName)
	tmpl, ok := templates.Load(key)
	if !ok {
		tmp := filepath.Join(t.TempDir(), "template")
		var err error
		if backend == conduit.BackendRocksDB {
			err = NewFreshRocksDB(tmp, serverName, version, Helper(t))
		} else {
			err = NewFreshDB(tmp, serverName, version)
		}
		if err != nil {
			t.Fatal(err)
		}
		files, err := readFiles(tmp)
		if err != nil {
			t.Fatal(err)
		}
		tmpl, _ = templates.LoadOrStore(key, files)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range tmpl.(map[string][]byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// readFiles reads every regular file of dir (a database directory has no subdirectories yet).
func readFiles(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = b
	}
	return out, nil
}

// NewFreshDB writes <dir>/conduit.db as Conduit's first start does (research
// conduit-join-and-spec-vectors.md §1, src/database/mod.rs::load_or_create): every table of the
// version with Conduit's DDL and pragmas, global c/version/keypair, the server user @conduit:<name>
// with an empty password, the admin room's alias, membership, short-ID and timeline rows (9
// simplified, unsigned PDUs), and the server user's m.push_rules account data.
func NewFreshDB(dir, serverName string, version int) error {
	tables, rows, err := firstStart(serverName, version)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, conduit.FileName)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("conduittest: %s already exists", path)
	}
	// Conduit's prepare_conn pragmas (src/database/abstraction/sqlite.rs).
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=page_size(2048)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, t := range tables {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+t+` ( "key" BLOB PRIMARY KEY, "value" BLOB NOT NULL )`); err != nil {
			return err
		}
	}
	for _, r := range rows {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO `+r.table+` (key, value) VALUES (?, coalesce(?, X''))`, r.key, r.value); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}

// NewFreshRocksDB writes a RocksDB database in dir as Conduit's first start on its RocksDB
// backend does: one column family per tree, created with Conduit's options by the shim-rocksdb
// helper, and the same rows as NewFreshDB, left in RocksDB's write-ahead log as Conduit leaves them.
func NewFreshRocksDB(dir, serverName string, version int, helper string) error {
	tables, rows, err := firstStart(serverName, version)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("conduittest: %s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	db, err := rocksdbkv.Open(dir, rocksdbkv.Options{Helper: helper, Create: true})
	if err != nil {
		return err
	}
	for _, t := range tables {
		if err := db.CreateColumnFamily(t); err != nil {
			db.Close()
			return err
		}
	}
	ops := make([]rocksdbkv.Op, 0, len(rows))
	for _, r := range rows {
		ops = append(ops, rocksdbkv.Op{CF: r.table, Key: r.key, Value: nonNil(r.value)})
	}
	if err := db.Write(ops); err != nil {
		db.Close()
		return err
	}
	return db.Close()
}

type row struct {
	table      string
	key, value []byte
}

// firstStart returns the trees and rows of Conduit's first start.
func firstStart(serverName string, version int) ([]string, []row, error) {
	tables := conduit.TablesFor(uint64(version))
	if tables == nil {
		return nil, nil, fmt.Errorf("conduittest: unknown database version %d", version)
	}
	if serverName == "" {
		return nil, nil, fmt.Errorf("conduittest: empty server name")
	}
	w := &writer{}
	w.first(serverName, version)
	return tables, w.rows, nil
}

type writer struct {
	count uint64
	rows  []row
}

func (w *writer) put(table string, key, value []byte) {
	w.rows = append(w.rows, row{table, key, nonNil(value)})
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (w *writer) next() uint64 { w.count++; return w.count }

func be64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func join(parts ...[]byte) []byte {
	var out []byte
	for i, p := range parts {
		if i > 0 {
			out = append(out, 0xFF)
		}
		out = append(out, p...)
	}
	return out
}

func randomAlnum(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

// pkcs8v2 is ring's Ed25519 PKCS#8 v2 document (what Conduit generates): seed and public key.
func pkcs8v2(seed []byte) []byte {
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	out := []byte{0x30, 0x53, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}
	out = append(out, seed...)
	out = append(out, 0xa1, 0x23, 0x03, 0x21, 0x00)
	return append(out, pub...)
}

func (w *writer) first(name string, version int) {
	serverUser := "@conduit:" + name
	// users.create(@conduit, None)
	w.put("userid_password", []byte(serverUser), nil)

	// The admin room: a v12 room ID is the create event's reference hash; older ones are random.
	create := map[string]any{
		"type": "m.room.create", "sender": serverUser, "state_key": "", "origin": name,
		"origin_server_ts": 1700000000000, "depth": 1, "prev_events": []string{}, "auth_events": []string{},
		"content": map[string]any{"room_version": "10", "creator": serverUser, "m.federate": true},
	}
	roomID := "!" + randomAlnum(18) + ":" + name
	if version >= conduit.Version010 {
		create["content"] = map[string]any{"room_version": "12"}
		b, _ := json.Marshal(create)
		sum := sha256.Sum256(b)
		roomID = "!" + base64.RawURLEncoding.EncodeToString(sum[:])
	}
	shortRoom := w.next()
	w.put("roomid_shortroomid", []byte(roomID), be64(shortRoom))

	events := []struct {
		typ      string
		stateKey string
		content  any
	}{
		{"m.room.create", "", create["content"]},
		{"m.room.member", serverUser, map[string]any{"membership": "join", "displayname": "conduit"}},
		{"m.room.power_levels", "", map[string]any{"users": map[string]any{serverUser: 100}}},
		{"m.room.join_rules", "", map[string]any{"join_rule": "invite"}},
		{"m.room.history_visibility", "", map[string]any{"history_visibility": "shared"}},
		{"m.room.guest_access", "", map[string]any{"guest_access": "forbidden"}},
		{"m.room.name", "", map[string]any{"name": name + " Admin Room"}},
		{"m.room.topic", "", map[string]any{"topic": "Manage " + name}},
		{"m.room.canonical_alias", "", map[string]any{"alias": "#admins:" + name, "alt_aliases": []string{}}},
	}
	var prev []string
	var last string
	for i, e := range events {
		ev := map[string]any{
			"type": e.typ, "sender": serverUser, "state_key": e.stateKey, "content": e.content,
			"origin": name, "origin_server_ts": 1700000000000 + i, "depth": i + 1,
			"prev_events": prev, "auth_events": []string{}, "room_id": roomID,
		}
		b, _ := json.Marshal(ev)
		sum := sha256.Sum256(b)
		eventID := "$" + base64.RawURLEncoding.EncodeToString(sum[:])
		ev["event_id"] = eventID
		pdu, _ := json.Marshal(ev)
		shortEvent := w.next()
		w.put("eventid_shorteventid", []byte(eventID), be64(shortEvent))
		w.put("shorteventid_eventid", be64(shortEvent), []byte(eventID))
		pduID := append(be64(shortRoom), be64(w.next())...)
		w.put("pduid_pdu", pduID, pdu)
		w.put("eventid_pduid", []byte(eventID), pduID)
		prev = []string{eventID}
		last = eventID
	}
	w.put("roomid_pduleaves", join([]byte(roomID), []byte(last)), []byte(last))
	w.put("roomid_shortstatehash", []byte(roomID), be64(w.next()))

	// Membership of the server user (state_cache::update_membership, update_joined_count).
	w.put("roomuseroncejoinedids", join([]byte(serverUser), []byte(roomID)), nil)
	w.put("userroomid_joined", join([]byte(serverUser), []byte(roomID)), nil)
	w.put("roomuserid_joined", join([]byte(roomID), []byte(serverUser)), nil)
	w.put("roomid_joinedcount", []byte(roomID), be64(1))
	w.put("roomid_invitedcount", []byte(roomID), be64(0))
	w.put("roomserverids", join([]byte(roomID), []byte(name)), nil)
	w.put("serverroomids", join([]byte(name), []byte(roomID)), nil)

	// The admin alias: keys are the alias localpart (src/database/key_value/rooms/alias.rs).
	w.put("alias_userid", []byte("admins"), []byte(serverUser))
	w.put("alias_roomid", []byte("admins"), []byte(roomID))
	w.put("aliasid_alias", join([]byte(roomID), be64(w.next())), []byte("#admins:"+name))

	// global: version and keypair (generated when missing).
	w.put("global", []byte("version"), be64(uint64(version)))
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	w.put("global", []byte("keypair"), append(append([]byte(randomAlnum(8)), 0xFF), pkcs8v2(seed)...))

	// set_emergency_access: the server user's (empty) push rules.
	rules := []byte(`{"content":{"global":{"content":[],"override":[],"room":[],"sender":[],"underride":[]}},"type":"m.push_rules"}`)
	dataKey := join(nil, []byte(serverUser), be64(w.next()), []byte("m.push_rules"))
	w.put("roomuserdataid_accountdata", dataKey, rules)
	w.put("roomusertype_roomuserdataid", join(nil, []byte(serverUser), []byte("m.push_rules")), dataKey)

	w.put("global", []byte("c"), be64(w.count))
}
