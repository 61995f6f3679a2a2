package eventcache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/transition-matrix/transition-matrix/eventcache/internal/kv"
)

func TestOpenCreatesPrivateFile(t *testing.T) {
	_, path := openTemp(t, Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("file mode %v, want 0600", m)
	}
	di, _ := os.Stat(filepath.Dir(path))
	if m := di.Mode().Perm(); m != 0o700 {
		t.Errorf("dir mode %v, want 0700", m)
	}
}

func TestPersistenceAndMeta(t *testing.T) {
	c, path := openTemp(t, Options{})
	sk := ""
	create := ev("!r", "$create", 1)
	create.Type, create.StateKey, create.Stream = "m.room.create", &sk, 42
	if err := c.Apply(Batch{
		Events:      []Event{create},
		FrontierAdd: []Ref{{"!r", "$p1"}, {"!r", "$p2"}, {"!r", "$p2"}, {"!r", "$create"}},
		Rooms:       []RoomMeta{{RoomID: "!r", RoomVersion: "10", Progress: []byte("cursor-1")}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(Batch{Events: []Event{ev("!r", "$p1", 2, "$create")}, FrontierAdd: []Ref{{"!r", "$p0"}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveFrontier("!r", "$p0"); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, c)
	c.Close()
	if _, err := c.Get("$create"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}

	c, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Get("$create")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.JSON) != string(create.JSON) || got.StateKey == nil || *got.StateKey != "" ||
		got.Stream != 42 || got.Type != "m.room.create" || got.OriginServerTS != create.OriginServerTS ||
		!slices.Equal(got.AuthEvents, create.AuthEvents) {
		t.Errorf("reopened event differs: %+v", got)
	}
	m, ok, err := c.RoomMeta("!r")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if m.Events != 2 || m.Frontier != 1 || m.RoomVersion != "10" || string(m.Progress) != "cursor-1" || m.Complete {
		t.Errorf("meta %+v", m)
	}
	f, _ := c.Frontier("!r", "", 0)
	eq(t, "frontier", f, []string{"$p2"})
	m.Complete = true
	if err := c.SetRoomMeta(m); err != nil {
		t.Fatal(err)
	}
	if m, _, _ := c.RoomMeta("!r"); !m.Complete || m.Events != 2 {
		t.Errorf("after SetRoomMeta: %+v", m)
	}
	if _, ok, _ := c.RoomMeta("!none"); ok {
		t.Error("unknown room has meta")
	}
	st, err := c.Stats()
	if err != nil || st.Events != 2 || st.Rooms != 1 || st.Frontier != 1 || st.DiskBytes == 0 || st.Engine != "bbolt" {
		t.Errorf("stats %+v %v", st, err)
	}
	if n, _ := c.Count("!r"); n != 2 {
		t.Errorf("Count = %d", n)
	}
	found, missing, err := c.GetMany([]string{"$p1", "$zz", "$create"})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "found", ids(found), []string{"$p1", "$create"})
	eq(t, "missing", missing, []string{"$zz"})
}

func TestFrontierPaging(t *testing.T) {
	c, _ := openTemp(t, Options{})
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("$f%02d", i))
	}
	if err := c.AddFrontier("!r", want...); err != nil {
		t.Fatal(err)
	}
	c.AddFrontier("!s", "$other")
	var got []string
	for after := ""; ; {
		page, err := c.Frontier("!r", after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1]
	}
	eq(t, "frontier", got, want)
	mustCheck(t, c)
}

func TestReplaceMovesIndexes(t *testing.T) {
	c, _ := openTemp(t, Options{})
	if err := c.Put(ev("!r", "$a", 5)); err != nil {
		t.Fatal(err)
	}
	moved := ev("!s", "$a", 7)
	if err := c.Put(moved, ev("!s", "$a", 8)); err != nil { // twice in one batch
		t.Fatal(err)
	}
	mustCheck(t, c)
	if n, _ := c.Count("!r"); n != 0 {
		t.Errorf("old room count %d", n)
	}
	if n, _ := c.Count("!s"); n != 1 {
		t.Errorf("new room count %d", n)
	}
	if e, _ := c.Get("$a"); e.Depth != 8 {
		t.Errorf("depth %d", e.Depth)
	}
}

func TestBatchIsAtomic(t *testing.T) {
	c, _ := openTemp(t, Options{})
	if err := c.Put(ev("!r", "$a", 1)); err != nil {
		t.Fatal(err)
	}
	bad := ev("!r", "$bad", 3)
	bad.RoomVersion = "1" // conflicts with the room's version 10, detected mid-batch
	err := c.Apply(Batch{
		Events:      []Event{ev("!r", "$b", 2, "$a"), bad},
		FrontierAdd: []Ref{{"!r", "$q"}},
		Rooms:       []RoomMeta{{RoomID: "!r", RoomVersion: "10", Complete: true}},
	})
	if err == nil || !strings.Contains(err.Error(), "room version") {
		t.Fatalf("conflicting batch: %v", err)
	}
	if ok, _ := c.Has("$b"); ok {
		t.Error("first event of a failed batch was stored")
	}
	if m, _, _ := c.RoomMeta("!r"); m.Complete || m.Frontier != 0 || m.Events != 1 {
		t.Errorf("failed batch changed meta: %+v", m)
	}
	for _, e := range []Event{{ID: "$x", RoomID: "!r", JSON: []byte("{}")}, {ID: "", RoomID: "!r"}, {ID: "$y", JSON: []byte("{}"), Status: "verified"}} {
		if err := c.Put(ev("!r", "$ok", 1), e); err == nil {
			t.Errorf("invalid event %+v accepted", e)
		}
	}
	if ok, _ := c.Has("$ok"); ok {
		t.Error("batch with invalid event partly stored")
	}
	mustCheck(t, c)
}

func TestCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	c, err := Open(good, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := c.Put(ev("!r", fmt.Sprintf("$e%d", i), int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 1000)), 0o600)
	truncated := filepath.Join(dir, "truncated.db")
	os.WriteFile(truncated, data[:len(data)/2], 0o600)
	short := filepath.Join(dir, "short.db")
	os.WriteFile(short, data[:100], 0o600)
	for _, p := range []string{garbage, truncated, short} {
		c, err := Open(p, Options{})
		if err == nil {
			c.Close()
			t.Errorf("%s opened", p)
			continue
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v does not name the file or wrap ErrCorrupt", p, err)
		}
	}

	other := filepath.Join(dir, "other.db")
	eng, err := kv.OpenBolt(other, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	eng.Update(func(w kv.Writer) error { return w.Put(keyFormat, []byte("transition-matrix/eventcache 99")) })
	eng.Close()
	if _, err := Open(other, Options{}); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), other) ||
		!strings.Contains(err.Error(), "99") {
		t.Errorf("newer format: %v", err)
	}
}

func TestCheckIntegrityFindsDamage(t *testing.T) {
	c, _ := openTemp(t, Options{})
	diamond(t, c)
	mustCheck(t, c)
	c.update(func(w kv.Writer) error { return w.Delete(depthKey("!r", 4, "$c")) })
	err := c.CheckIntegrity()
	if err == nil || !strings.Contains(err.Error(), "$c: no depth index entry") {
		t.Errorf("CheckIntegrity = %v", err)
	}
}

// TestConcurrentReadsDuringWrites runs readers against a writer adding
// chains batch by batch: every snapshot must hold whole batches only.
func TestConcurrentReadsDuringWrites(t *testing.T) {
	c, _ := openTemp(t, Options{})
	const batches, per = 40, 10
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				st, err := c.Stats()
				if err != nil {
					errs <- err
					return
				}
				if st.Events%per != 0 {
					errs <- fmt.Errorf("reader %d saw %d events: a partial batch", r, st.Events)
					return
				}
				n := st.Events / per
				if n == 0 {
					continue
				}
				// The newest event of the last batch visible must walk back whole.
				head := fmt.Sprintf("$b%03d-%02d", n-1, per-1)
				got, missing, err := c.Backfill("!r", []string{head}, per*batches)
				if err != nil {
					errs <- err
					return
				}
				if int64(len(got)) < n*per || len(missing) != 0 {
					errs <- fmt.Errorf("reader %d: backfill from %s got %d events, missing %v", r, head, len(got), missing)
					return
				}
			}
		}()
	}
	prev := []string(nil)
	for b := range batches {
		var evs []Event
		for j := range per {
			id := fmt.Sprintf("$b%03d-%02d", b, j)
			evs = append(evs, ev("!r", id, int64(b*per+j), prev...))
			prev = []string{id}
		}
		if err := c.Put(evs...); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mustCheck(t, c)
}

func TestRoomEventsScansOneRoomOldestFirstWithEveryStatus(t *testing.T) {
	c, err := Open(filepath.Join(t.TempDir(), "c.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mk := func(id, room string, depth int64, status Status) Event {
		return Event{ID: id, RoomID: room, RoomVersion: "10", Depth: depth, Type: "m.room.message", JSON: []byte(`{"id":"` + id + `"}`), Status: status}
	}
	if err := c.Put(mk("$b", "!r", 2, StatusVerified), mk("$a", "!r", 1, StatusVerified), mk("$c", "!r", 3, "rejected"), mk("$x", "!r2", 1, StatusVerified)); err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := c.RoomEvents("!r", func(e Event) bool { ids = append(ids, e.ID+":"+string(e.Status)); return true }); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids, ","); got != "$a:verified,$b:verified,$c:rejected" {
		t.Fatalf("RoomEvents = %s", got)
	}
	counts, err := c.StatusCounts("!r")
	if err != nil || counts[StatusVerified] != 2 || counts["rejected"] != 1 || len(counts) != 2 {
		t.Fatalf("StatusCounts = %v, %v", counts, err)
	}
}
