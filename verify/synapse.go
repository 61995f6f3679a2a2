package verify

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// SynapseRooms reads rooms from a running Synapse's admin API: current state, joined local
// members and forward extremities as they are now.
type SynapseRooms struct {
	Admin      *synapseclient.AdminClient
	ServerName string
}

// RoomIDs implements Rooms.
func (s *SynapseRooms) RoomIDs(ctx context.Context) ([]string, error) {
	all, err := s.Admin.AllRooms(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(all))
	for i, r := range all {
		ids[i] = r.RoomID
	}
	sort.Strings(ids)
	return ids, nil
}

// Room implements Rooms.
func (s *SynapseRooms) Room(ctx context.Context, roomID string) (Room, error) {
	r := Room{RoomID: roomID}
	d, err := s.Admin.Room(ctx, roomID)
	if err != nil {
		return r, fmt.Errorf("room details: %w", err)
	}
	r.RoomVersion = d.Version
	if d.JoinedLocalMembers == 0 {
		return r, nil
	}
	state, err := s.Admin.RoomState(ctx, roomID)
	if err != nil {
		return r, fmt.Errorf("current state: %w", err)
	}
	if r.State, err = stateFromClientEvents(state); err != nil {
		return r, fmt.Errorf("current state: %w", err)
	}
	members, err := s.Admin.RoomMembers(ctx, roomID)
	if err != nil {
		return r, fmt.Errorf("members: %w", err)
	}
	for _, m := range members {
		if strings.HasSuffix(m, ":"+s.ServerName) {
			r.JoinedLocalMembers = append(r.JoinedLocalMembers, m)
		}
	}
	sort.Strings(r.JoinedLocalMembers)
	fx, err := s.Admin.ForwardExtremities(ctx, roomID)
	if err != nil {
		return r, fmt.Errorf("forward extremities: %w", err)
	}
	for _, f := range fx {
		r.Heads = append(r.Heads, f.EventID)
	}
	return r, nil
}
