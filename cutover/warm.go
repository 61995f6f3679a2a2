package cutover

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// WarmResult is what warm did with one room.
type WarmResult struct {
	Room    Room
	State   WarmRoomState
	Outcome string // "done", "done earlier", "skipped", "failed", "interrupted"
	Detail  string
}

// Warmer pages /messages backwards on the target, as a local member, through rooms until
// m.room.create arrives, so the target backfills each room's whole history now.
type Warmer struct {
	Target *Client
	Store  *WarmStore
	// Limit is the events per /messages page; Stall the pages in a row that bring nothing after
	// which a room is given up.
	Limit, Stall int

	events   atomic.Int64 // events received in this run
	roomDone atomic.Int64
}

// Events is the number of events received so far in this run.
func (wm *Warmer) Events() int64 { return wm.events.Load() }

// RoomsDone is the number of rooms whose m.room.create has arrived, in this run or earlier.
func (wm *Warmer) RoomsDone() int64 { return wm.roomDone.Load() }

// WarmAll warms every room not skipped, at most parallel at once.
func (wm *Warmer) WarmAll(ctx context.Context, rooms []Room, parallel int) []WarmResult {
	return eachRoom(rooms, parallel, func(room Room) WarmResult {
		if room.Skip != "" {
			return WarmResult{Room: room, Outcome: "skipped", Detail: room.Skip}
		}
		return wm.Warm(ctx, room)
	})
}

// Warm pages one room from its stored token until m.room.create arrives.
func (wm *Warmer) Warm(ctx context.Context, room Room) WarmResult {
	res := WarmResult{Room: room}
	st := wm.Store.Get(room.ID)
	if st.Done {
		wm.roomDone.Add(1)
		res.State, res.Outcome = st, "done earlier"
		return res
	}
	member, err := wm.member(ctx, room, st.Member)
	if err != nil {
		res.State, res.Outcome, res.Detail = st, "failed", err.Error()
		return res
	}
	st.Member = member
	stalled := 0
	for {
		if ctx.Err() != nil {
			res.State, res.Outcome = st, "interrupted"
			return res
		}
		page, err := wm.Target.Messages(ctx, room.ID, member, st.From, wm.Limit)
		if err != nil {
			res.State = st
			if ctx.Err() != nil {
				res.Outcome = "interrupted"
				return res
			}
			res.Outcome, res.Detail = "failed", fmt.Sprintf("failed after %d pages: %v", st.Pages, err)
			return res
		}
		st.Pages++
		st.Events += len(page.Chunk)
		wm.events.Add(int64(len(page.Chunk)))
		if slices.ContainsFunc(page.Chunk, TimelineEvent.IsCreate) {
			st.Done = true
		} else if page.End == "" || len(page.Chunk) == 0 {
			stalled++
		} else {
			stalled = 0
			st.From = page.End
		}
		if err := wm.Store.Put(room.ID, st); err != nil {
			res.State, res.Outcome, res.Detail = st, "failed", "saving the resume state: "+err.Error()
			return res
		}
		if st.Done {
			wm.roomDone.Add(1)
			res.State, res.Outcome = st, "done"
			return res
		}
		if stalled >= wm.Stall {
			res.State, res.Outcome = st, "failed"
			res.Detail = fmt.Sprintf("no progress after %d pages in a row: the target's backfill brings nothing more (%d events so far, m.room.create not reached; is `shim serve` running and complete for this room?)", stalled, st.Events)
			return res
		}
	}
}

// member picks the local member to page as: the stored one, else the first the target has
// joined to the room.
func (wm *Warmer) member(ctx context.Context, room Room, stored string) (string, error) {
	if stored != "" && slices.Contains(room.Members, stored) {
		return stored, nil
	}
	var errs []string
	for _, m := range room.Members {
		held, err := wm.Target.JoinedRooms(ctx, m)
		if err != nil {
			errs = append(errs, m+": "+err.Error())
			continue
		}
		if slices.Contains(held, room.ID) {
			return m, nil
		}
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("no local member can read the room (%s)", strings.Join(errs, "; "))
	}
	return "", fmt.Errorf("the target does not hold the room: none of its %d local members is joined there (run shim rejoin)", len(room.Members))
}
