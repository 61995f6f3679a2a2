package main

import (
	"context"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/world"
)

// TestWarmBringsBothBranchesOfALongFork: a room whose DAG holds two branches of 150 events
// (a netsplit) merged by one event. Conduit backfills from one `v`, its oldest PDU, so after the
// first page it follows one branch only; the shim must still hand over the other one.
func TestWarmBringsBothBranchesOfALongFork(t *testing.T) {
	b := newCutoverBed(t, world.Options{Seed: 35, Rooms: -1, MessagesPerRoom: 20, LongForkLength: 150, NoV1Room: true}, true)
	ctx := context.Background()
	if code, out, errOut := b.run(ctx, "rejoin", "-config", b.cfgPath); code != 0 {
		t.Fatalf("rejoin: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := b.run(ctx, "warm", "-config", b.cfgPath); code != 0 {
		t.Fatalf("warm: exit %d\n%s\n%s", code, out, errOut)
	}
	r := b.w.RoomsOfKind(world.KindRemoteMembers)[0]
	info, ok := b.target.Room(r.ID)
	if !ok {
		t.Fatal("the target does not hold the forked room")
	}
	held := map[string]bool{}
	for _, id := range info.Timeline {
		held[id] = true
	}
	missing := 0
	for _, e := range r.Events {
		if !held[e.ID] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("the target misses %d of the %d events of the forked room", missing, len(r.Events))
	}
	b.checkWhole(t)
}
