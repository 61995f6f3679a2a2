package cutover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// RejoinResult is what rejoin did with one room.
type RejoinResult struct {
	Room    Room
	Member  string
	Outcome string // "joined", "already held", "skipped", "failed"
	Detail  string
}

// Rejoin asks the target to join, through serverName (the shim), one local member of every room
// not skipped, at most parallel rooms at once; rooms the target holds already are left alone.
func Rejoin(ctx context.Context, target *Client, serverName string, rooms []Room, parallel int) []RejoinResult {
	r := &rejoiner{target: target, server: serverName, joined: map[string][]string{}}
	return eachRoom(rooms, parallel, func(room Room) RejoinResult {
		if room.Skip != "" {
			return RejoinResult{Room: room, Outcome: "skipped", Detail: room.Skip}
		}
		return r.rejoin(ctx, room)
	})
}

// rejoiner joins rooms on the target, remembering each member's joined rooms.
type rejoiner struct {
	target *Client
	server string

	mu     sync.Mutex
	joined map[string][]string // member -> rooms the target has them joined to
}

// rejoin joins one room as the first of its local members the target knows.
func (r *rejoiner) rejoin(ctx context.Context, room Room) RejoinResult {
	res := RejoinResult{Room: room}
	var refused []string
	for _, m := range room.Members {
		held, err := r.joinedRooms(ctx, m)
		if errors.Is(err, ErrForbidden) {
			refused = append(refused, m) // not a user of the target (not imported?)
			continue
		}
		res.Member = m
		if err != nil {
			res.Outcome, res.Detail = "failed", "asking the target for the member's rooms: "+err.Error()
			return res
		}
		if slices.Contains(held, room.ID) {
			res.Outcome = "already held"
			return res
		}
		if err := r.target.Join(ctx, m, room.ID, r.server); err != nil {
			res.Outcome, res.Detail = "failed", err.Error()
			return res
		}
		res.Outcome = "joined"
		return res
	}
	res.Outcome = "failed"
	res.Detail = fmt.Sprintf("the target refuses every local member (%s): were the users imported, and is the appservice's namespace @.*:%s?",
		strings.Join(refused, ", "), r.server)
	return res
}

func (r *rejoiner) joinedRooms(ctx context.Context, member string) ([]string, error) {
	r.mu.Lock()
	held, ok := r.joined[member]
	r.mu.Unlock()
	if ok {
		return held, nil
	}
	held, err := r.target.JoinedRooms(ctx, member)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.joined[member] = held
	r.mu.Unlock()
	return held, nil
}
