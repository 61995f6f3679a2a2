package synapsedb_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/pgtest"
	"github.com/transition-matrix/transition-matrix/internal/recorded"
	"github.com/transition-matrix/transition-matrix/synapsedb"
	"github.com/transition-matrix/transition-matrix/synapsedb/synapsedbtest"
)

// testdata/synapse-1.163.2 was recorded from a real Synapse 1.163.2 (SQLite): tables.json holds
// the rows of the tables below (password hashes blanked), the client_*.json files what its client
// API answered @alice:mas.test about herself.

// booleans are the columns PostgreSQL types BOOLEAN (SQLite stores 0/1).
var booleans = map[string]bool{"hidden": true, "is_verified": true}

// loadRecorded writes the recorded rows into a database made by synapsedbtest.CreateSchema.
func loadRecorded(t *testing.T, db *sql.DB, backend string) {
	t.Helper()
	var tables map[string]struct {
		Columns []string
		Rows    [][]any
	}
	recorded.JSON(t, "tables.json", &tables)
	keep := map[string][]string{"users": {"name", "creation_ts", "admin", "deactivated"}}
	for _, name := range []string{"users", "devices", "e2e_device_keys_json", "e2e_cross_signing_keys", "e2e_cross_signing_signatures",
		"e2e_room_keys_versions", "e2e_room_keys", "room_tags"} {
		tb := tables[name]
		cols := tb.Columns
		if k := keep[name]; k != nil {
			cols = k
		}
		for _, row := range tb.Rows {
			var vals []any
			var marks []string
			for _, c := range cols {
				i := indexOf(tb.Columns, c)
				v := row[i]
				if f, ok := v.(float64); ok {
					v = int64(f)
					if booleans[c] && backend == synapsedb.Postgres {
						v = f != 0
					}
				}
				vals = append(vals, v)
				if backend == synapsedb.Postgres {
					marks = append(marks, "$"+strconv.Itoa(len(vals)))
				} else {
					marks = append(marks, "?")
				}
			}
			q := "INSERT INTO " + name + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(marks, ", ") + ")"
			if _, err := db.Exec(q, vals...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	panic("no column " + x)
}

func asAny(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestClientStandInsMatchRecordedSynapse: on SQLite and PostgreSQL, the reads give what the real
// Synapse's client API gave the user: device and cross-signing keys with her own signatures,
// without unsigned; the backup version and its sessions.
func TestClientStandInsMatchRecordedSynapse(t *testing.T) {
	const alice = "@alice:mas.test"
	ctx := context.Background()
	lite := filepath.Join(t.TempDir(), "homeserver.db")
	sdb := synapsedbtest.OpenSQLite(t, lite)
	if err := synapsedbtest.CreateSchema(ctx, sdb); err != nil {
		t.Fatal(err)
	}
	loadRecorded(t, sdb, synapsedb.SQLite)
	sdb.Close()
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase(t)
	pdb := synapsedbtest.OpenPostgres(t, dsn)
	if err := synapsedbtest.CreateSchema(ctx, pdb); err != nil {
		t.Fatal(err)
	}
	loadRecorded(t, pdb, synapsedb.Postgres)
	pdb.Close()

	var query struct {
		DeviceKeys      map[string]map[string]map[string]any `json:"device_keys"`
		MasterKeys      map[string]any                       `json:"master_keys"`
		SelfSigningKeys map[string]any                       `json:"self_signing_keys"`
		UserSigningKeys map[string]any                       `json:"user_signing_keys"`
	}
	recorded.JSON(t, "client_keys_query_alice_self.json", &query)
	for _, d := range query.DeviceKeys[alice] {
		delete(d, "unsigned") // the export drops it
	}
	var version map[string]any
	recorded.JSON(t, "client_room_keys_version_alice.json", &version)
	var keys struct {
		Rooms map[string]struct {
			Sessions map[string]any `json:"sessions"`
		} `json:"rooms"`
	}
	recorded.JSON(t, "client_room_keys_keys_alice.json", &keys)

	for _, dsn := range []string{lite, dsn} {
		db := open(t, dsn)
		if err := db.CheckClientSchema(ctx); err != nil {
			t.Fatal(err)
		}
		k, err := db.UserKeys(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := asAny(t, k.DeviceKeys), asAny(t, query.DeviceKeys[alice]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s device keys:\n got %v\nwant %v", db.Backend(), got, want)
		}
		for name, pair := range map[string][2]any{"master": {k.MasterKey, query.MasterKeys[alice]}, "self_signing": {k.SelfSigningKey, query.SelfSigningKeys[alice]},
			"user_signing": {k.UserSigningKey, query.UserSigningKeys[alice]}} {
			var got any
			if err := json.Unmarshal(pair[0].(json.RawMessage), &got); err != nil {
				t.Fatalf("%s %s: %v", db.Backend(), name, err)
			}
			if want := asAny(t, pair[1]); !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s key:\n got %v\nwant %v", db.Backend(), name, got, want)
			}
		}
		kb, err := db.UserKeyBackup(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		gotVersion := map[string]any{"version": kb.Version, "algorithm": kb.Algorithm, "auth_data": kb.AuthData, "etag": kb.ETag, "count": kb.Count}
		if got, want := asAny(t, gotVersion), asAny(t, version); !reflect.DeepEqual(got, want) {
			t.Errorf("%s backup version:\n got %v\nwant %v", db.Backend(), got, want)
		}
		wantRooms := map[string]any{}
		for r, s := range keys.Rooms {
			wantRooms[r] = s.Sessions
		}
		if got, want := asAny(t, kb.Rooms), asAny(t, wantRooms); !reflect.DeepEqual(got, want) {
			t.Errorf("%s backup sessions:\n got %v\nwant %v", db.Backend(), got, want)
		}
		tags, err := db.UserRoomTags(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if len(tags) != 2 || string(tags["!C2LxXSjD3pFOXH2PPkNJHrqBuTEshdMVqApK7UGDY8w"]["u.work"]) != `{"order":0.5}` {
			t.Errorf("%s tags %s", db.Backend(), asAny(t, tags))
		}
		if none, err := db.UserKeyBackup(ctx, "@nobody:mas.test"); err != nil || none != nil {
			t.Errorf("%s no backup: %v %v", db.Backend(), none, err)
		}
	}
}
