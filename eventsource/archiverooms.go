package eventsource

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// ErrUnknownRoom is returned by RoomsToArchive for a requested room Synapse does not list.
var ErrUnknownRoom = errors.New("Synapse does not know it (check the room ID)")

// RoomLister is the part of Synapse's admin API that RoomsToArchive uses.
type RoomLister interface {
	AllRooms(ctx context.Context) ([]synapseclient.RoomSummary, error)
	ForwardExtremities(ctx context.Context, roomID string) ([]synapseclient.ForwardExtremity, error)
}

// RoomsToArchive lists the rooms with a joined local user and their forward extremities (only
// those in only when it is not empty); rooms without a joined local user are returned as skipped.
func RoomsToArchive(ctx context.Context, admin RoomLister, only []string) ([]RoomHeads, []string, error) {
	all, err := admin.AllRooms(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("listing rooms: %w", err)
	}
	var rooms []RoomHeads
	var skipped []string
	for _, r := range all {
		if len(only) > 0 && !slices.Contains(only, r.RoomID) {
			continue
		}
		if r.JoinedLocalMembers == 0 {
			skipped = append(skipped, r.RoomID)
			continue
		}
		fx, err := admin.ForwardExtremities(ctx, r.RoomID)
		if err != nil {
			return nil, nil, fmt.Errorf("forward extremities of %s: %w", r.RoomID, err)
		}
		heads := make([]string, len(fx))
		for i, f := range fx {
			heads[i] = f.EventID
		}
		rooms = append(rooms, RoomHeads{RoomID: r.RoomID, Heads: heads, Version: r.Version})
	}
	for _, id := range only {
		listed := slices.ContainsFunc(rooms, func(r RoomHeads) bool { return r.RoomID == id })
		if !listed && !slices.Contains(skipped, id) {
			return nil, nil, fmt.Errorf("room %s: %w", id, ErrUnknownRoom)
		}
	}
	return rooms, skipped, nil
}
