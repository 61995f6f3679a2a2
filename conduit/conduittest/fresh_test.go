package conduittest_test

import (
	"path/filepath"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
)

func TestNewFreshDBPassesConduitsChecks(t *testing.T) {
	for _, version := range []int{16, 17, 18} {
		dir := filepath.Join(t.TempDir(), "db")
		if err := conduittest.NewFreshDB(dir, "example.org", version); err != nil {
			t.Fatal(err)
		}
		db, err := conduit.Open(dir, conduit.Options{ServerName: "example.org"})
		if err != nil {
			t.Fatalf("version %d: %v", version, err)
		}
		if db.Version() != uint64(version) {
			t.Errorf("version %d read as %d", version, db.Version())
		}
		if _, _, err := db.Rows("sqlite_master", nil); err == nil {
			t.Error("Rows read a table that is not Conduit's")
		}
		users, err := db.Users()
		if err != nil || len(users) != 1 || users[0] != "@conduit:example.org" {
			t.Errorf("users %v %v", users, err)
		}
		room, ok, err := db.Raw("alias_roomid", []byte("admins"))
		if err != nil || !ok {
			t.Fatalf("admin room: %v", err)
		}
		if _, ok, _ := db.Raw("userroomid_joined", append([]byte("@conduit:example.org\xff"), room...)); !ok {
			t.Error("server user not joined to the admin room")
		}
		pdus, _, err := db.Rows("pduid_pdu", nil)
		if err != nil || len(pdus) != 9 {
			t.Errorf("%d admin room PDUs, want 9 (%v)", len(pdus), err)
		}
		if v, seed, err := db.Keypair(); err != nil || len(v) != 8 || len(seed) != 32 {
			t.Errorf("keypair %q %x %v", v, seed, err)
		}
		db.Close()
		if err := conduittest.NewFreshDB(dir, "example.org", version); err == nil {
			t.Error("NewFreshDB overwrote an existing database")
		}
	}
	if err := conduittest.NewFreshDB(t.TempDir(), "example.org", 19); err == nil {
		t.Error("version 19 accepted")
	}
}
