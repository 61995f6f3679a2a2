package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/transition-matrix/transition-matrix/eventcache"
)

// expectation is what the source's events say the target's timeline of a room should hold.
type expectation struct {
	byID       map[string]*SourceEvent
	expected   map[string]bool // in the timeline and servable
	hideable   map[string]bool // expected, but Synapse itself holds them only redacted by visibility
	outliers   int
	unservable int
}

// expect works out which of a room's source events the target's timeline should hold: those the
// forward extremities reach through prev_events (the ones Conduit backfills), minus the ones the
// shim never serves. heads are added to the events no other event refers to.
func expect(events []SourceEvent, heads []string) *expectation {
	x := &expectation{byID: make(map[string]*SourceEvent, len(events)), expected: map[string]bool{}, hideable: map[string]bool{}}
	referenced := map[string]bool{}
	redacted := map[string]bool{}
	for i := range events {
		e := &events[i]
		x.byID[e.ID] = e
		for _, p := range e.PrevEvents {
			referenced[p] = true
		}
		for _, a := range e.AuthEvents {
			referenced[a] = true
		}
		if e.Redacts != "" {
			redacted[e.Redacts] = true
		}
	}
	var stack []string
	for _, h := range heads {
		if x.byID[h] != nil {
			stack = append(stack, h)
		}
	}
	for _, e := range events {
		if !referenced[e.ID] {
			stack = append(stack, e.ID)
		}
	}
	reached := map[string]bool{}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if reached[id] {
			continue
		}
		e := x.byID[id]
		if e == nil {
			continue
		}
		reached[id] = true
		stack = append(stack, e.PrevEvents...)
	}
	for _, e := range events {
		switch {
		case !reached[e.ID]:
			x.outliers++
		case e.Status == eventcache.StatusRejected:
			x.unservable++
		default:
			x.expected[e.ID] = true
			if e.Status == eventcache.StatusRedacted && !redacted[e.ID] {
				x.hideable[e.ID] = true
			}
		}
	}
	return x
}

// firstMembership is the depth of each user's earliest membership event in the room.
func (x *expectation) firstMembership() map[string]int64 {
	out := map[string]int64{}
	for _, e := range x.byID {
		if e.Type != "m.room.member" || e.StateKey == nil {
			continue
		}
		if d, ok := out[*e.StateKey]; !ok || e.Depth < d {
			out[*e.StateKey] = e.Depth
		}
	}
	return out
}

// membersToAsk orders the joined local members by how early they first appear in the room, so
// that the one who can see the most history is asked first; it returns at most n.
func membersToAsk(members []string, x *expectation, n int) []string {
	first := x.firstMembership()
	out := slices.Clone(members)
	sort.SliceStable(out, func(i, j int) bool {
		di, iok := first[out[i]]
		dj, jok := first[out[j]]
		if iok != jok {
			return iok
		}
		if di != dj {
			return di < dj
		}
		return out[i] < out[j]
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// loadAndCheckRoom reads what the source knows of a room and compares it.
func (v *verifier) loadAndCheckRoom(ctx context.Context, roomID string) RoomReport {
	r, err := v.cfg.Rooms.Room(ctx, roomID)
	if err != nil {
		return roomError(RoomReport{RoomID: roomID, MissingIDs: []string{}, ExtraIDs: []string{}}, err)
	}
	return v.checkRoom(ctx, r)
}

// checkRoom compares one room.
func (v *verifier) checkRoom(ctx context.Context, r Room) RoomReport {
	rep := RoomReport{RoomID: r.RoomID, RoomVersion: r.RoomVersion, MissingIDs: []string{}, ExtraIDs: []string{}}
	if slices.Contains(v.cfg.UnsupportedVersions, r.RoomVersion) {
		rep.Status = RoomUnsupportedVersion
		rep.Error = fmt.Sprintf("the target cannot host room version %s", r.RoomVersion)
		return rep
	}
	if len(r.JoinedLocalMembers) == 0 {
		rep.Status = RoomNoLocalMembers
		rep.Error = "no local user is joined: the room cannot be joined through the shim"
		return rep
	}
	events, err := v.cfg.Events.Events(ctx, r)
	if err != nil {
		return roomError(rep, err)
	}
	if len(events) == 0 {
		return roomError(rep, errors.New("the source holds no event of this room: run `shim archive` first"))
	}
	x := expect(events, r.Heads)
	rep.Expected, rep.Outliers, rep.Unservable = len(x.expected), x.outliers, x.unservable

	var seen map[string]bool
	var lastErr error
	for _, member := range membersToAsk(r.JoinedLocalMembers, x, v.cfg.MembersToTry) {
		seen, err = v.timeline(ctx, r.RoomID, member)
		if errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound) {
			lastErr = err
			continue
		}
		if err != nil {
			return roomError(rep, err)
		}
		rep.AsUser = member
		break
	}
	if rep.AsUser == "" {
		rep.Status = RoomNotJoined
		rep.Error = fmt.Sprintf("no local member is in the room on the target (run `shim rejoin`): %v", lastErr)
		return rep
	}

	var missing []*SourceEvent
	for id := range x.expected {
		switch {
		case seen[id]:
			rep.Arrived++
		case x.hideable[id]:
			rep.Hidden++
		default:
			missing = append(missing, x.byID[id])
		}
	}
	rep.Missing = len(missing)
	sort.Slice(missing, func(i, j int) bool {
		if missing[i].Depth != missing[j].Depth {
			return missing[i].Depth < missing[j].Depth
		}
		return missing[i].ID < missing[j].ID
	})
	for _, e := range missing[:min(len(missing), v.cfg.MaxListed)] {
		rep.MissingIDs = append(rep.MissingIDs, e.ID)
	}
	var extra []string
	for id := range seen {
		if x.byID[id] == nil {
			extra = append(extra, id)
		}
	}
	sort.Strings(extra)
	rep.Extra = len(extra)
	rep.ExtraIDs = append(rep.ExtraIDs, extra[:min(len(extra), v.cfg.MaxListed)]...)

	if r.State != nil {
		st, err := v.cfg.Target.State(ctx, r.RoomID, rep.AsUser)
		if err != nil {
			return roomError(rep, fmt.Errorf("current state: %w", err))
		}
		rep.State = compareState(r.State, st, x)
	}
	switch {
	case rep.Missing > 0:
		rep.Status = RoomMissing
	case rep.State != nil && len(rep.State.Missing)+len(rep.State.Differs) > 0:
		rep.Status = RoomStateDiffers
	default:
		rep.Status = RoomOK
	}
	return rep
}

func roomError(rep RoomReport, err error) RoomReport {
	rep.Status = RoomError
	rep.Error = err.Error()
	return rep
}

// timeline pages the room's /messages backwards as member until the target has nothing older,
// and returns the event IDs seen.
func (v *verifier) timeline(ctx context.Context, roomID, member string) (map[string]bool, error) {
	seen := map[string]bool{}
	from := ""
	for page := 0; ; page++ {
		if page >= v.cfg.MaxPages {
			return nil, fmt.Errorf("/messages: still not at the start after %d pages", page)
		}
		p, err := v.cfg.Target.Messages(ctx, roomID, member, from, v.cfg.PageLimit)
		if err != nil {
			return nil, err
		}
		v.pages.Add(1)
		for _, e := range p.Chunk {
			if e.EventID != "" {
				seen[e.EventID] = true
			}
		}
		if len(p.Chunk) == 0 || p.End == "" || p.End == from {
			return seen, nil
		}
		from = p.End
	}
}

// compareState compares the source's current state with the target's, piece by piece.
func compareState(want map[StateKey]string, got []StateEvent, x *expectation) *StateReport {
	rep := &StateReport{Missing: []StateEntry{}, Differs: []StateEntry{}}
	have := make(map[StateKey]string, len(got))
	for _, e := range got {
		have[StateKey{e.Type, e.StateKey}] = e.EventID
	}
	keys := make([]StateKey, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Type != keys[j].Type {
			return keys[i].Type < keys[j].Type
		}
		return keys[i].StateKey < keys[j].StateKey
	})
	for _, k := range keys {
		exp := want[k]
		rep.Compared++
		act, ok := have[k]
		switch {
		case !ok:
			rep.Missing = append(rep.Missing, StateEntry{Type: k.Type, StateKey: k.StateKey, Expected: exp})
		case act == exp:
			rep.Same++
		case newer(x, act, exp):
			rep.Newer++
		default:
			rep.Differs = append(rep.Differs, StateEntry{Type: k.Type, StateKey: k.StateKey, Expected: exp, Actual: act})
		}
	}
	return rep
}

// newer reports whether the target's event act supersedes the source's exp: the source does not
// have act (the target made it), or has it deeper in the room than exp.
func newer(x *expectation, act, exp string) bool {
	a := x.byID[act]
	if a == nil {
		return true
	}
	e := x.byID[exp]
	return e != nil && a.Depth > e.Depth
}
