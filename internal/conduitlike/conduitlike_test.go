package conduitlike

import (
	"bytes"
	"context"
	"net/http/httptest"
	"slices"
	"sort"
	"testing"

	"github.com/transition-matrix/transition-matrix/federation"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/matrixspec"
	"github.com/transition-matrix/transition-matrix/signing"
)

// worldSource answers the shim's questions straight from a generated world: a stand-in for the
// cache, enough to drive the consumer through the real federation server.
type worldSource struct {
	federation.EventSource // methods the consumer never calls are left nil
	w                      *world.World
	tamper                 string // an event ID whose body is altered after signing
}

func (s worldSource) pdu(e *world.Event) federation.PDU {
	if e.ID == s.tamper {
		return federation.PDU(bytes.Replace(e.JSON, []byte(`"body":"`), []byte(`"body":"tampered `), 1))
	}
	return federation.PDU(e.JSON)
}

func (s worldSource) Event(_ context.Context, id string) (federation.PDU, error) {
	e := s.w.Event(id)
	if e == nil {
		return nil, matrixspec.ErrNotFound
	}
	return s.pdu(e), nil
}

// Backfill walks prev_events breadth-first from the seeds and answers newest first.
func (s worldSource) Backfill(_ context.Context, roomID string, seeds []string, limit int) ([]federation.PDU, error) {
	r := s.w.Room(roomID)
	if r == nil {
		return nil, matrixspec.ErrNotFound
	}
	seen := map[string]bool{}
	var found []*world.Event
	queue := append([]string{}, seeds...)
	for len(queue) > 0 && len(found) < limit {
		id := queue[0]
		queue = queue[1:]
		if seen[id] {
			continue
		}
		seen[id] = true
		e := r.Event(id)
		if e == nil {
			continue
		}
		found = append(found, e)
		queue = append(queue, e.PrevEvents...)
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].Depth > found[j].Depth })
	out := make([]federation.PDU, len(found))
	for i, e := range found {
		out[i] = s.pdu(e)
	}
	return out, nil
}

func setup(t *testing.T, w *world.World, src federation.EventSource) *Consumer {
	t.Helper()
	key := signing.Key{ID: signing.KeyID(w.SigningKey.KeyID), Seed: w.SigningKey.Private.Seed()}
	id := &signing.Identity{ServerName: w.ServerName, Keys: []signing.Key{key}}
	srv, err := federation.New(federation.Config{Identity: id, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	keys := WorldKeys(w)
	return &Consumer{Identity: id, Destination: w.ServerName, BaseURL: hs.URL, Keys: keys}
}

func TestBackfillEveryRoomThroughTheShim(t *testing.T) {
	w, err := world.Generate(world.Options{Seed: 7, MessagesPerRoom: 150, OldKeyEvents: 5, V12Rooms: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := setup(t, w, worldSource{w: w})
	if w.Rooms[len(w.Rooms)-1].Version != "12" {
		t.Fatal("the world has no room of version 12")
	}
	for _, r := range w.Rooms {
		res, err := c.BackfillRoom(context.Background(), r.ID, r.Version, r.ForwardExtremities())
		if err != nil {
			t.Fatalf("room v%s %s: %v", r.Version, r.Kind, err)
		}
		if !res.ReachedCreate || res.Count(Verified) != len(r.Events) || res.Count(Rejected) != 0 {
			t.Fatalf("room v%s %s: %d events, verified %d, rejected %d, create %v", r.Version, r.Kind,
				len(r.Events), res.Count(Verified), res.Count(Rejected), res.ReachedCreate)
		}
		// Newest → oldest, and exactly the room's events.
		var ids []string
		for i, e := range res.Timeline {
			if i > 0 && e.Depth > res.Timeline[i-1].Depth {
				t.Fatalf("room %s: depth %d after %d", r.ID, e.Depth, res.Timeline[i-1].Depth)
			}
			ids = append(ids, e.EventID)
		}
		var want []string
		for _, e := range r.Events {
			want = append(want, e.ID)
		}
		slices.Sort(ids)
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Fatalf("room %s: received a different event set", r.ID)
		}
	}
}

func TestTamperedEventIsNeverKeptIntact(t *testing.T) {
	w, err := world.Generate(world.Options{Seed: 8, Rooms: -1, MessagesPerRoom: 30})
	if err != nil {
		t.Fatal(err)
	}
	r := w.Rooms[0]
	var victim *world.Event
	for _, e := range r.Events[len(r.Events)/2:] {
		if e.Type == "m.room.message" && bytes.Contains(e.JSON, []byte(`"body":"`)) && !e.Redacted {
			victim = e
			break
		}
	}
	if victim == nil {
		t.Fatal("no message to tamper with")
	}
	c := setup(t, w, worldSource{w: w, tamper: victim.ID})
	res, err := c.BackfillRoom(context.Background(), r.ID, r.Version, r.ForwardExtremities())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range res.Timeline {
		if e.EventID == victim.ID {
			found = true
			if e.Outcome != Redacted {
				t.Fatalf("tampered event: outcome %s, want %s (signature holds, hash does not)", e.Outcome, Redacted)
			}
		}
	}
	if !found || res.Count(Redacted) != 1 || res.Count(Verified) != len(r.Events)-1 {
		t.Fatalf("found %v, redacted %d, verified %d of %d", found, res.Count(Redacted), res.Count(Verified), len(r.Events))
	}
}
