package eventcache

import (
	"fmt"
	"slices"
	"testing"
)

// diamond builds, in room !r:
//
//	create(1) <- a(2) <- b(3) <- c(4) <- e(5) <- f(6) <- g(7)
//	                      b(3) <- d(4) <-'        g also points at $gone (not cached)
func diamond(t *testing.T, c *Cache) {
	t.Helper()
	err := c.Put(
		ev("!r", "$create", 1),
		ev("!r", "$a", 2, "$create"),
		ev("!r", "$b", 3, "$a"),
		ev("!r", "$c", 4, "$b"),
		ev("!r", "$d", 4, "$b"),
		ev("!r", "$e", 5, "$c", "$d"),
		ev("!r", "$f", 6, "$e"),
		ev("!r", "$g", 7, "$f", "$gone"),
		ev("!other", "$x", 9, "$f"), // another room pointing into !r
	)
	if err != nil {
		t.Fatal(err)
	}
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestBackfill(t *testing.T) {
	c, _ := openTemp(t, Options{})
	diamond(t, c)
	cases := []struct {
		name          string
		seeds         []string
		limit         int
		want, missing []string
	}{
		{"all", []string{"$f"}, 100, []string{"$f", "$e", "$c", "$d", "$b", "$a", "$create"}, nil},
		{"inclusive seed, limit 1", []string{"$f"}, 1, []string{"$f"}, nil},
		{"equal depths tie by ID", []string{"$e"}, 3, []string{"$e", "$c", "$d"}, nil},
		{"missing prev reported", []string{"$g"}, 2, []string{"$g", "$f"}, []string{"$gone"}},
		{"missing only from returned events", []string{"$f", "$g"}, 1, []string{"$g"}, []string{"$gone"}},
		{"fork seeds, shared ancestors once", []string{"$c", "$d"}, 10, []string{"$c", "$d", "$b", "$a", "$create"}, nil},
		{"unknown seed", []string{"$nope", "$b"}, 10, []string{"$b", "$a", "$create"}, []string{"$nope"}},
		{"seed from another room ignored", []string{"$x"}, 10, nil, nil},
		{"duplicate seeds", []string{"$a", "$a"}, 10, []string{"$a", "$create"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, missing, err := c.Backfill("!r", tc.seeds, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "events", ids(got), tc.want)
			eq(t, "missing", missing, tc.missing)
		})
	}
	got, _, _ := c.Backfill("!r", []string{"$c"}, 1)
	if want := ev("!r", "$c", 4, "$b"); string(got[0].JSON) != string(want.JSON) || got[0].Depth != 4 ||
		!slices.Equal(got[0].PrevEvents, want.PrevEvents) || got[0].RoomVersion != "10" {
		t.Errorf("event not returned as stored: %+v", got[0])
	}
}

func TestBackfillStatuses(t *testing.T) {
	c, path := openTemp(t, Options{})
	diamond(t, c)
	rej := ev("!r", "$c", 4, "$b")
	rej.Status = StatusRejected
	if err := c.Put(rej); err != nil {
		t.Fatal(err)
	}
	got, missing, err := c.Backfill("!r", []string{"$e"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "events", ids(got), []string{"$e", "$d", "$b", "$a", "$create"})
	eq(t, "missing", missing, []string{"$c"})
	if _, err := c.Get("$c"); err != ErrNotFound {
		t.Errorf("Get of a rejected event: %v", err)
	}
	if e, err := c.GetAnyStatus("$c"); err != nil || e.Status != StatusRejected {
		t.Errorf("GetAnyStatus: %+v %v", e.Status, err)
	}
	if ok, _ := c.Has("$c"); !ok {
		t.Error("Has($c) = false")
	}
	c.Close()
	c2, err := Open(path, Options{ServeStatuses: []Status{StatusVerified, StatusRejected}})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	got, missing, _ = c2.Backfill("!r", []string{"$e"}, 3)
	eq(t, "events when rejected is served", ids(got), []string{"$e", "$c", "$d"})
	eq(t, "missing", missing, nil)
}

// TestDefaultServesServableStatuses: a cache opened with the zero Options serves exactly the
// statuses that may be served (verified, redacted, pruned), never rejected ones.
func TestDefaultServesServableStatuses(t *testing.T) {
	c, _ := openTemp(t, Options{})
	diamond(t, c)
	for i, st := range []Status{StatusVerified, StatusRedacted, StatusPruned, StatusRejected} {
		e := ev("!r", fmt.Sprintf("$s%d", i), 5, "$e")
		e.Status = st
		if err := c.Put(e); err != nil {
			t.Fatal(err)
		}
		_, err := c.Get(e.ID)
		if served := err == nil; served != st.Servable() || served == (st == StatusRejected) {
			t.Errorf("status %s: Get err %v, Servable %v", st, err, st.Servable())
		}
	}
}

func TestMissingEvents(t *testing.T) {
	c, _ := openTemp(t, Options{})
	diamond(t, c)
	cases := []struct {
		name             string
		earliest, latest []string
		limit            int
		minDepth         int64
		want, missing    []string
	}{
		{"stop at earliest", []string{"$b"}, []string{"$f"}, 10, 0, []string{"$d", "$c", "$e"}, nil},
		{"limit keeps events nearest latest", []string{"$b"}, []string{"$f"}, 2, 0, []string{"$c", "$e"}, nil},
		{"min_depth", nil, []string{"$f"}, 10, 4, []string{"$d", "$c", "$e"}, nil},
		{"earliest on one branch only", []string{"$c"}, []string{"$e"}, 10, 0, []string{"$create", "$a", "$b", "$d"}, nil},
		{"latest excluded, missing prev", []string{"$e"}, []string{"$g"}, 10, 0, []string{"$f"}, []string{"$gone"}},
		{"latest unknown", nil, []string{"$nope"}, 10, 0, nil, []string{"$nope"}},
		{"latest ancestor of another latest", []string{"$b"}, []string{"$f", "$e"}, 10, 0, []string{"$d", "$c"}, nil},
		{"zero limit", nil, []string{"$f"}, 0, 0, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, missing, err := c.MissingEvents("!r", tc.earliest, tc.latest, tc.limit, tc.minDepth)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "events", ids(got), tc.want)
			eq(t, "missing", missing, tc.missing)
		})
	}
}
