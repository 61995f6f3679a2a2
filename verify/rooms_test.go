package verify

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/transition-matrix/transition-matrix/cutover"
)

const alice, bob = "@alice:example.org", "@bob:example.org"

func run(t *testing.T, src *memSource, tgt *fakeTarget, mod ...func(*Config)) *Report {
	t.Helper()
	cfg := Config{ServerName: "example.org", Rooms: src, Events: src, Users: src, Target: tgt, Jobs: 3, PageLimit: 7, MaxListed: 5}
	for _, m := range mod {
		m(&cfg)
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func roomReport(t *testing.T, rep *Report, id string) RoomReport {
	t.Helper()
	for _, r := range rep.Rooms {
		if r.RoomID == id {
			return r
		}
	}
	t.Fatalf("room %s not in the report", id)
	return RoomReport{}
}

func TestWholeRoomIsOK(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	r, evs := linearRoom("!a:example.org", 40, alice, bob)
	src.rooms[r.RoomID], src.events[r.RoomID] = r, evs
	fr := targetRoom(r, evs)
	// The target's own rejoin of alice: an extra event that supersedes her membership.
	fr.timeline = append([]string{"$rejoin"}, fr.timeline...)
	for i := range fr.state {
		if fr.state[i].Type == "m.room.member" && fr.state[i].StateKey == alice {
			fr.state[i].EventID = "$rejoin"
		}
	}
	tgt.rooms[r.RoomID] = fr
	rep := run(t, src, tgt)
	got := roomReport(t, rep, r.RoomID)
	if got.Status != RoomOK || got.Expected != 40 || got.Arrived != 40 || got.Missing != 0 || got.Extra != 1 || got.ExtraIDs[0] != "$rejoin" {
		t.Fatalf("room report %+v", got)
	}
	if got.State.Compared != 3 || got.State.Same != 2 || got.State.Newer != 1 {
		t.Fatalf("state %+v", got.State)
	}
	if rep.Result != ResultOK || rep.Summary.EventsArrived != 40 {
		t.Fatalf("result %s, summary %+v", rep.Result, rep.Summary)
	}
	// 41 events in pages of 7: 6 pages with events, then an empty one without end.
	if tgt.pages != 7 {
		t.Errorf("pages = %d, want 7", tgt.pages)
	}
}

func TestMissingEventsNamedOldestFirst(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	r, evs := linearRoom("!c:example.org", 30, alice)
	src.rooms[r.RoomID], src.events[r.RoomID] = r, evs
	fr := targetRoom(r, evs)
	fr.timeline = fr.timeline[:22] // history cut short: the 8 oldest never arrived
	tgt.rooms[r.RoomID] = fr
	rep := run(t, src, tgt)
	got := roomReport(t, rep, r.RoomID)
	if got.Status != RoomMissing || got.Missing != 8 || got.Arrived != 22 {
		t.Fatalf("room report %+v", got)
	}
	want := []string{evs[0].ID, evs[1].ID, evs[2].ID, evs[3].ID, evs[4].ID}
	if !slices.Equal(got.MissingIDs, want) {
		t.Errorf("missing IDs %v, want the 5 oldest %v", got.MissingIDs, want)
	}
	if rep.Result != ResultMissing || rep.Summary.RoomsMissing != 1 || rep.Summary.EventsMissing != 8 {
		t.Errorf("result %s summary %+v", rep.Result, rep.Summary)
	}
}

func TestHiddenOutlierAndUnservableEvents(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	r, evs := linearRoom("!h:example.org", 12, alice)
	// Events 2 and 3 were served redacted by Synapse (before any local user joined); 5 is
	// redacted by a redaction (10), so a member sees it; 7 was rejected by the shim.
	evs[2].Status, evs[3].Status, evs[5].Status, evs[7].Status = "redacted", "redacted", "redacted", "rejected"
	evs[10].Type, evs[10].Redacts = "m.room.redaction", evs[5].ID
	// An auth-only outlier: referenced by auth_events, never by prev_events.
	evs = append(evs, SourceEvent{ID: "$outlier", Type: "m.room.power_levels", StateKey: strp(""), Depth: 3, Status: "verified"})
	evs[11].AuthEvents = append(evs[11].AuthEvents, "$outlier")
	src.rooms[r.RoomID], src.events[r.RoomID] = r, evs
	fr := targetRoom(r, evs[:12])
	var tl []string
	for _, id := range fr.timeline {
		if id != evs[2].ID && id != evs[3].ID && id != evs[5].ID && id != evs[7].ID {
			tl = append(tl, id)
		}
	}
	fr.timeline = tl
	tgt.rooms[r.RoomID] = fr
	got := roomReport(t, run(t, src, tgt), r.RoomID)
	if got.Expected != 11 || got.Hidden != 2 || got.Missing != 1 || got.MissingIDs[0] != evs[5].ID || got.Outliers != 1 || got.Unservable != 1 || got.Arrived != 8 {
		t.Fatalf("room report %+v", got)
	}
}

func TestForkedRoomAndExtraHeads(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	r, evs := linearRoom("!f:example.org", 10, alice)
	// A branch off event 4 that nothing merged: a forward extremity the source names.
	evs = append(evs, SourceEvent{ID: "$branch", Type: "m.room.message", Depth: 6, Status: "verified", PrevEvents: []string{evs[4].ID}})
	r.Heads = append(r.Heads, "$branch")
	src.rooms[r.RoomID], src.events[r.RoomID] = r, evs
	tgt.rooms[r.RoomID] = targetRoom(r, evs[:10])
	got := roomReport(t, run(t, src, tgt), r.RoomID)
	if got.Expected != 11 || got.Missing != 1 || got.MissingIDs[0] != "$branch" {
		t.Fatalf("room report %+v", got)
	}
}

func TestMemberOrderAndNotJoined(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	r, evs := linearRoom("!m:example.org", 10, bob, alice) // bob's membership is older
	r.JoinedLocalMembers = []string{alice, bob}
	src.rooms[r.RoomID], src.events[r.RoomID] = r, evs
	fr := targetRoom(r, evs)
	fr.members = []string{alice} // bob is not in the room on the target
	tgt.rooms[r.RoomID] = fr
	got := roomReport(t, run(t, src, tgt), r.RoomID)
	if got.Status != RoomOK || got.AsUser != alice {
		t.Fatalf("room report %+v: want ok as alice after bob was refused", got)
	}

	fr.members = nil
	got = roomReport(t, run(t, src, tgt), r.RoomID)
	if got.Status != RoomNotJoined || got.Error == "" {
		t.Fatalf("room report %+v", got)
	}
}

func TestUnsupportedAndNoLocalMembers(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	r, evs := linearRoom("!v:example.org", 5, alice)
	r.RoomVersion = "1"
	src.rooms[r.RoomID], src.events[r.RoomID] = r, evs
	r2, evs2 := linearRoom("!n:example.org", 5)
	src.rooms[r2.RoomID], src.events[r2.RoomID] = r2, evs2
	rep := run(t, src, tgt)
	if got := roomReport(t, rep, r.RoomID); got.Status != RoomUnsupportedVersion {
		t.Errorf("v1 room: %+v", got)
	}
	if got := roomReport(t, rep, r2.RoomID); got.Status != RoomNoLocalMembers {
		t.Errorf("room without local members: %+v", got)
	}
	if rep.Result != ResultOK {
		t.Errorf("result %s: unsupported versions are no problem without -strict", rep.Result)
	}
	rep = run(t, src, tgt, func(c *Config) { c.Strict = true })
	if rep.Result != ResultMissing || rep.Summary.RoomsWithProblems != 1 {
		t.Errorf("strict: result %s, summary %+v", rep.Result, rep.Summary)
	}
}

func TestStateDifferences(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	r, evs := linearRoom("!s:example.org", 10, alice, bob)
	evs[6].Type, evs[6].StateKey = "m.room.topic", strp("")
	evs[8].Type, evs[8].StateKey = "m.room.topic", strp("")
	r.State[StateKey{"m.room.topic", ""}] = evs[6].ID // the export's state predates topic 8
	r.State[StateKey{"m.room.name", ""}] = evs[7].ID
	src.rooms[r.RoomID], src.events[r.RoomID] = r, evs
	fr := targetRoom(r, evs)
	var st []cutover.StateEvent
	for _, e := range fr.state {
		switch {
		case e.Type == "m.room.topic":
			e.EventID = evs[8].ID // later in the source's own history: fine
		case e.Type == "m.room.name":
			continue // lost
		case e.Type == "m.room.member" && e.StateKey == bob:
			e.EventID = evs[0].ID // an older event of the source: wrong
		}
		st = append(st, e)
	}
	fr.state = st
	tgt.rooms[r.RoomID] = fr
	rep := run(t, src, tgt)
	got := roomReport(t, rep, r.RoomID)
	if got.Status != RoomStateDiffers || got.State.Newer != 1 || len(got.State.Missing) != 1 || len(got.State.Differs) != 1 {
		t.Fatalf("room report %+v state %+v", got, got.State)
	}
	if m := got.State.Missing[0]; m.Type != "m.room.name" || m.Expected != evs[7].ID {
		t.Errorf("missing %+v", m)
	}
	if d := got.State.Differs[0]; d.StateKey != bob || d.Actual != evs[0].ID {
		t.Errorf("differs %+v", d)
	}
	if rep.Result != ResultMissing || rep.Summary.StateDifferences != 2 {
		t.Errorf("result %s summary %+v", rep.Result, rep.Summary)
	}
}

func TestErrors(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	r, evs := linearRoom("!e:example.org", 5, alice)
	src.rooms[r.RoomID], src.events[r.RoomID] = r, evs
	tgt.rooms[r.RoomID] = targetRoom(r, evs)
	tgt.failRoom[r.RoomID] = &cutover.TargetError{Endpoint: "GET /rooms/{roomId}/messages", Status: 500, ErrCode: "M_UNKNOWN"}
	rep := run(t, src, tgt)
	if got := roomReport(t, rep, r.RoomID); got.Status != RoomError || got.Error == "" {
		t.Fatalf("room report %+v", got)
	}
	if rep.Result != ResultIncomplete {
		t.Errorf("result %s", rep.Result)
	}

	r2 := Room{RoomID: "!z:example.org", RoomVersion: "10", JoinedLocalMembers: []string{alice}}
	src.rooms[r2.RoomID] = r2
	if got := roomReport(t, run(t, src, tgt), r2.RoomID); got.Status != RoomError {
		t.Errorf("a room the cache does not hold: %+v", got)
	}

	tgt.checkErr = errors.New("connection refused")
	if _, err := Run(context.Background(), Config{Rooms: src, Events: src, Target: tgt}); err == nil {
		t.Error("Run with an unreachable target: no error")
	}
	if _, err := Run(context.Background(), Config{}); err == nil {
		t.Error("Run without sources and target: no error")
	}
}
