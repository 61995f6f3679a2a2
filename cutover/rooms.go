package cutover

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/roomversions"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// Room is a room of Synapse as rejoin and warm see it.
type Room struct {
	ID      string
	Version string
	Members []string // local joined members, sorted
	// Skip says why the room is not attempted ("" = attempt it).
	Skip string
}

// SkipReason says why a room of version with joinedLocal local members is not moved ("" = move
// it): the one rule rejoin, warm and the demo share.
func SkipReason(version string, joinedLocal int) string {
	switch {
	case joinedLocal == 0:
		return "no local user is joined"
	case !roomversions.CanHost(version):
		return "room version " + roomversions.Effective(version) + " cannot be hosted by Conduit"
	}
	return ""
}

// Rooms lists Synapse's rooms with their local joined members, sorted by ID; rooms without one,
// and rooms of versions the target cannot host, carry the reason they are skipped.
func Rooms(ctx context.Context, admin *synapseclient.AdminClient, serverName string) ([]Room, error) {
	all, err := admin.AllRooms(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing Synapse's rooms: %w", err)
	}
	var out []Room
	for _, r := range all {
		room := Room{ID: r.RoomID, Version: r.Version, Skip: SkipReason(r.Version, r.JoinedLocalMembers)}
		if room.Skip == "" {
			members, err := admin.RoomMembers(ctx, r.RoomID)
			if err != nil {
				return nil, fmt.Errorf("members of %s: %w", r.RoomID, err)
			}
			for _, m := range members {
				if strings.HasSuffix(m, ":"+serverName) {
					room.Members = append(room.Members, m)
				}
			}
			slices.Sort(room.Members)
			if len(room.Members) == 0 {
				room.Skip = SkipReason(r.Version, 0)
			}
		}
		out = append(out, room)
	}
	slices.SortFunc(out, func(a, b Room) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// eachRoom calls work for every room, at most parallel at once, and returns the results in the
// rooms' order.
func eachRoom[R any](rooms []Room, parallel int, work func(Room) R) []R {
	results := make([]R, len(rooms))
	var g errgroup.Group
	g.SetLimit(max(parallel, 1))
	for i, room := range rooms {
		g.Go(func() error {
			results[i] = work(room)
			return nil // work reports in its result
		})
	}
	_ = g.Wait()
	return results
}
