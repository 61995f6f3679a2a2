package verify

import (
	"context"
	"testing"
)

// BenchmarkRoom20k compares one room of 20,000 events against a fake target holding all of it:
// verify's own cost per room (expectation, pagination bookkeeping, state), without HTTP.
func BenchmarkRoom20k(b *testing.B) {
	src, tgt := newMemSource(), newFakeTarget()
	r, evs := linearRoom("!b:example.org", 20_000, alice, bob)
	src.rooms[r.RoomID], src.events[r.RoomID] = r, evs
	tgt.rooms[r.RoomID] = targetRoom(r, evs)
	cfg := Config{Rooms: src, Events: src, Target: tgt}
	b.ReportAllocs()
	for b.Loop() {
		rep, err := Run(context.Background(), cfg)
		if err != nil || rep.Rooms[0].Arrived != 20_000 {
			b.Fatalf("%v %+v", err, rep)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20_000, "ns/event")
}
