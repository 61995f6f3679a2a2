package eventsource

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// fakeRooms answers AllRooms and ForwardExtremities from fixed data.
type fakeRooms struct {
	rooms []synapseclient.RoomSummary
	heads map[string][]string
	err   error // returned by ForwardExtremities
}

func (f *fakeRooms) AllRooms(context.Context) ([]synapseclient.RoomSummary, error) {
	return f.rooms, nil
}

func (f *fakeRooms) ForwardExtremities(_ context.Context, roomID string) ([]synapseclient.ForwardExtremity, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []synapseclient.ForwardExtremity
	for _, id := range f.heads[roomID] {
		out = append(out, synapseclient.ForwardExtremity{EventID: id})
	}
	return out, nil
}

func newFakeRooms() *fakeRooms {
	return &fakeRooms{
		rooms: []synapseclient.RoomSummary{
			{RoomID: "!a:hs", JoinedLocalMembers: 2},
			{RoomID: "!left:hs", JoinedLocalMembers: 0},
			{RoomID: "!b:hs", JoinedLocalMembers: 1},
		},
		heads: map[string][]string{"!a:hs": {"$a1", "$a2"}, "!b:hs": {"$b1"}},
	}
}

func TestRoomsToArchiveSkipsRoomsWithoutLocalUsers(t *testing.T) {
	rooms, skipped, err := RoomsToArchive(context.Background(), newFakeRooms(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []RoomHeads{{RoomID: "!a:hs", Heads: []string{"$a1", "$a2"}}, {RoomID: "!b:hs", Heads: []string{"$b1"}}}
	if !reflect.DeepEqual(rooms, want) {
		t.Errorf("rooms = %v, want %v", rooms, want)
	}
	if !reflect.DeepEqual(skipped, []string{"!left:hs"}) {
		t.Errorf("skipped = %v, want [!left:hs]", skipped)
	}
}

func TestRoomsToArchiveOnly(t *testing.T) {
	rooms, skipped, err := RoomsToArchive(context.Background(), newFakeRooms(), []string{"!b:hs", "!left:hs"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms) != 1 || rooms[0].RoomID != "!b:hs" {
		t.Errorf("rooms = %v, want only !b:hs", rooms)
	}
	if !reflect.DeepEqual(skipped, []string{"!left:hs"}) {
		t.Errorf("skipped = %v, want [!left:hs]", skipped)
	}
	_, _, err = RoomsToArchive(context.Background(), newFakeRooms(), []string{"!b:hs", "!nope:hs"})
	if !errors.Is(err, ErrUnknownRoom) {
		t.Fatalf("unknown room: err = %v, want ErrUnknownRoom", err)
	}
}

func TestRoomsToArchiveNamesTheRoomWhoseHeadsFail(t *testing.T) {
	f := newFakeRooms()
	f.err = errors.New("boom")
	_, _, err := RoomsToArchive(context.Background(), f, nil)
	if err == nil || !errors.Is(err, f.err) {
		t.Fatalf("err = %v, want the ForwardExtremities error wrapped", err)
	}
	if want := "forward extremities of !a:hs"; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q, want it to name %q", err, want)
	}
}
