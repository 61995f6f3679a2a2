package eventsource

import (
	"context"
	"testing"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

// TestCheckAsksForAMissingKeyOnce: an event signed with a key nobody knows is rejected, and the
// full check after the fast path does not ask for that key a second time.
func TestCheckAsksForAMissingKeyOnce(t *testing.T) {
	w, err := world.Generate(world.Options{Seed: 5, MessagesPerRoom: 2, NoV1Room: true})
	if err != nil {
		t.Fatal(err)
	}
	r := w.Rooms[0]
	e := r.Events[len(r.Events)-1]
	keys := &countingKeys{next: StaticKeys{}}
	c := &checker{keys: keys}
	ev, reason, err := c.check(context.Background(), r.ID, r.Version, e.JSON, "")
	if err != nil || ev.Status != eventcache.StatusRejected {
		t.Fatalf("status %q (%s), %v; want rejected", ev.Status, reason, err)
	}
	if n := keys.n.Load(); n != 1 {
		t.Fatalf("%d key lookups for one signature, want 1", n)
	}
	// With the key known the event verifies on the fast path, one lookup.
	keys = &countingKeys{next: StaticKeys{w.ServerName: {w.SigningKey.KeyID: w.SigningKey.Public}}}
	c = &checker{keys: keys}
	if ev, reason, err := c.check(context.Background(), r.ID, r.Version, e.JSON, ""); err != nil || ev.Status != eventcache.StatusVerified {
		t.Fatalf("with the key: status %q (%s), %v", ev.Status, reason, err)
	}
	if n := keys.n.Load(); n != 1 {
		t.Fatalf("%d key lookups for one signature, want 1", n)
	}
}
