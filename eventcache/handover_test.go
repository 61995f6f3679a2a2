package eventcache

import "testing"

// forked builds, in room !r, two branches from $b merged by $m:
//
//	create(1) <- b(2) <- a1(3) <- a2(4) <- a3(5) <- m(6)
//	             b(2) <- b1(3) <- b2(4) <- b3(5) <-'
func forked(t *testing.T, c *Cache) {
	t.Helper()
	err := c.Put(
		ev("!r", "$create", 1), ev("!r", "$b", 2, "$create"),
		ev("!r", "$a1", 3, "$b"), ev("!r", "$a2", 4, "$a1"), ev("!r", "$a3", 5, "$a2"),
		ev("!r", "$b1", 3, "$b"), ev("!r", "$b2", 4, "$b1"), ev("!r", "$b3", 5, "$b2"),
		ev("!r", "$m", 6, "$a3", "$b3"),
	)
	if err != nil {
		t.Fatal(err)
	}
}

// TestHandoverFollowsEveryBranch plays Conduit: one v (the last event of the last answer), pages
// of 3; every event is handed over once, across a reopen of the cache.
func TestHandoverFollowsEveryBranch(t *testing.T) {
	c, path := openTemp(t, Options{})
	forked(t, c)
	if cont, edge, err := c.HandoverConfirm("!r", "$m"); err != nil || cont || edge != nil {
		t.Fatalf("no handover running: %v %v %v", cont, edge, err)
	}
	if err := c.HandoverOffer("!r", []string{"$m"}); err != nil {
		t.Fatal(err)
	}
	if cont, _, _ := c.HandoverConfirm("!r", "$m"); cont {
		t.Fatal("an offer without a handover running was kept")
	}

	if err := c.HandoverReset("!r"); err != nil { // a backfill from a join
		t.Fatal(err)
	}
	page, _, err := c.Backfill("!r", []string{"$m"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "first page", ids(page), []string{"$m", "$a3", "$b3"})
	c.HandoverOffer("!r", ids(page))
	// A restart of the shim between two requests loses nothing.
	c.Close()
	c, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	got := map[string]int{}
	for _, id := range ids(page) {
		got[id]++
	}
	v := "$b3"
	var pages [][]string
	for range 6 {
		cont, edge, err := c.HandoverConfirm("!r", v)
		if err != nil || !cont {
			t.Fatalf("v=%s: continues %v, %v", v, cont, err)
		}
		page, _, err := c.BackfillNotHanded("!r", append([]string{v}, edge...), 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.HandoverOffer("!r", ids(page)); err != nil {
			t.Fatal(err)
		}
		pages = append(pages, ids(page))
		if len(page) == 0 {
			break
		}
		for _, id := range ids(page) {
			got[id]++
		}
		v = page[len(page)-1].ID
	}
	eq(t, "second page", pages[0], []string{"$a2", "$b2", "$a1"})
	for _, id := range []string{"$create", "$b", "$a1", "$a2", "$a3", "$b1", "$b2", "$b3", "$m"} {
		if got[id] != 1 {
			t.Errorf("%s handed %d times (pages %v)", id, got[id], pages)
		}
	}
	if last := pages[len(pages)-1]; len(last) != 0 {
		t.Errorf("pages %v: want an empty answer once everything is handed over", pages)
	}

	// A repeated request (its answer was lost) gets the same answer again.
	c.HandoverReset("!r")
	page, _, _ = c.Backfill("!r", []string{"$m"}, 3)
	c.HandoverOffer("!r", ids(page))
	var answers [2][]string
	for i := range answers {
		_, edge, _ := c.HandoverConfirm("!r", "$b3")
		p, _, _ := c.BackfillNotHanded("!r", append([]string{"$b3"}, edge...), 3)
		c.HandoverOffer("!r", ids(p))
		answers[i] = ids(p)
	}
	eq(t, "repeated answer", answers[1], answers[0])

	// An answer cut short (Conduit kept $m and $a3 only): $b3 is answered again.
	c.HandoverReset("!r")
	c.HandoverOffer("!r", []string{"$m", "$a3", "$b3"})
	_, edge, _ := c.HandoverConfirm("!r", "$a3")
	p, _, _ := c.BackfillNotHanded("!r", append([]string{"$a3"}, edge...), 2)
	eq(t, "after a cut answer", ids(p), []string{"$b3", "$a2"})
	mustCheck(t, c)
}
