package eventcache

import (
	"slices"
	"strings"
	"testing"
)

func TestJoinsAndStateSnapshotsPersist(t *testing.T) {
	c, path := openTemp(t, Options{})
	join := Join{ID: "$join", RoomID: "!r", Depth: 7, PrevEvents: []string{"$a", "$b"}, AuthEvents: []string{"$create", "$pl"},
		JSON: []byte(`{"type":"m.room.member","content":{"membership":"join"}}`)}
	snap := StateSnapshot{EventID: "$join", RoomID: "!r", State: []string{"$create", "$pl", "$m"}, AuthChain: []string{"$create"}}
	empty := StateSnapshot{EventID: "$first", RoomID: "!r"}
	if err := c.Apply(Batch{Joins: []Join{join}, StateSnapshots: []StateSnapshot{snap, empty}}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, ok, err := c.Join("$join")
	if err != nil || !ok || got.RoomID != "!r" || got.Depth != 7 || !slices.Equal(got.PrevEvents, join.PrevEvents) ||
		!slices.Equal(got.AuthEvents, join.AuthEvents) || string(got.JSON) != string(join.JSON) {
		t.Fatalf("join after reopening: %+v %v %v", got, ok, err)
	}
	s, ok, err := c.StateAt("$join")
	if err != nil || !ok || s.RoomID != "!r" || !slices.Equal(s.State, snap.State) || !slices.Equal(s.AuthChain, snap.AuthChain) {
		t.Fatalf("snapshot after reopening: %+v %v %v", s, ok, err)
	}
	if s, ok, _ := c.StateAt("$first"); !ok || len(s.State) != 0 {
		t.Fatalf("empty snapshot: %+v %v", s, ok)
	}
	if _, ok, _ := c.Join("$other"); ok {
		t.Fatal("a join that was never stored")
	}
	if _, ok, _ := c.StateAt("$other"); ok {
		t.Fatal("a snapshot that was never stored")
	}
	// Joins are not events: no count, no walk, no Get.
	if st, _ := c.Stats(); st.Events != 0 {
		t.Fatalf("joins counted as events: %+v", st)
	}
	if ok, _ := c.Has("$join"); ok {
		t.Fatal("the join is among the events")
	}
	n := 0
	c.Joins(func(j Join) bool { n++; return j.ID == "$join" })
	if n != 1 {
		t.Fatalf("Joins listed %d", n)
	}
	mustCheck(t, c)
}

func TestJoinBatchIsAtomic(t *testing.T) {
	c, _ := openTemp(t, Options{})
	if err := c.Put(ev("!r", "$a", 1)); err != nil {
		t.Fatal(err)
	}
	bad := ev("!r", "$bad", 3)
	bad.RoomVersion = "1" // conflicts mid-batch
	err := c.Apply(Batch{Events: []Event{bad},
		Joins:          []Join{{ID: "$j", RoomID: "!r", PrevEvents: []string{"$a"}, JSON: []byte("{}")}},
		StateSnapshots: []StateSnapshot{{EventID: "$j", RoomID: "!r", State: []string{"$a"}}}})
	if err == nil {
		t.Fatal("conflicting batch accepted")
	}
	if _, ok, _ := c.Join("$j"); ok {
		t.Fatal("the join of a failed batch was stored")
	}
	if _, ok, _ := c.StateAt("$j"); ok {
		t.Fatal("the snapshot of a failed batch was stored")
	}
	for _, b := range []Batch{
		{Joins: []Join{{ID: "$j", RoomID: "!r", JSON: []byte("{}")}}},                          // no prev_events
		{Joins: []Join{{ID: "$j", PrevEvents: []string{"$a"}, JSON: []byte("{}")}}},            // no room
		{Joins: []Join{{ID: "$j", RoomID: "!r", PrevEvents: []string{"$a"}}}},                  // no JSON
		{StateSnapshots: []StateSnapshot{{EventID: "$j"}}},                                     // no room
		{Events: []Event{ev("!r", "$ok", 2)}, StateSnapshots: []StateSnapshot{{RoomID: "!r"}}}, // no event
	} {
		if err := c.Apply(b); err == nil || !strings.Contains(err.Error(), "eventcache:") {
			t.Errorf("invalid batch %+v: %v", b, err)
		}
	}
	if ok, _ := c.Has("$ok"); ok {
		t.Fatal("a batch with an invalid snapshot was partly stored")
	}
	mustCheck(t, c)
}
