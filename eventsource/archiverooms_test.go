package eventsource

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/world"
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
			{RoomID: "!a:hs", JoinedLocalMembers: 2, Version: "10"},
			{RoomID: "!left:hs", JoinedLocalMembers: 0, Version: "10"},
			{RoomID: "!b:hs", JoinedLocalMembers: 1, Version: "11"},
		},
		heads: map[string][]string{"!a:hs": {"$a1", "$a2"}, "!b:hs": {"$b1"}},
	}
}

func TestRoomsToArchiveSkipsRoomsWithoutLocalUsers(t *testing.T) {
	rooms, skipped, err := RoomsToArchive(context.Background(), newFakeRooms(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []RoomHeads{{RoomID: "!a:hs", Heads: []string{"$a1", "$a2"}, Version: "10"}, {RoomID: "!b:hs", Heads: []string{"$b1"}, Version: "11"}}
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

// TestArchiveTakesTheListedRoomVersion: given the version Synapse's admin API lists, the archive
// asks /event for nothing to find it (a room of one linear history needs no single event at
// all), and stores the same verified room as a crawl that finds the version itself.
func TestArchiveTakesTheListedRoomVersion(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 21, Users: 4, Rooms: 1, MessagesPerRoom: 150, NoV1Room: true}})
	var room *world.Room
	for _, r := range b.servedRooms() {
		if r.Kind == world.KindOrdinary && (room == nil || len(r.Events) > len(room.Events)) {
			room = r
		}
	}
	if room == nil {
		t.Fatal("the world has no ordinary room")
	}
	heads := []RoomHeads{{RoomID: room.ID, Heads: room.ForwardExtremities(), Version: room.Version}}
	b.sim.ResetStats()
	sum := b.src.Archive(context.Background(), heads, 1, nil)[0]
	if sum.Err != nil || !sum.Complete || sum.Events != int64(len(room.Events)) || sum.RoomVersion != room.Version {
		t.Fatalf("archive with the listed version: %+v, the world has %d events of version %s", sum, len(room.Events), room.Version)
	}
	if n := b.sim.Count("fed.event"); n != 0 {
		t.Fatalf("the archive asked /event %d times with the room version given", n)
	}

	b2 := newBedFor(t, b.w, bedOptions{}, filepath.Join(t.TempDir(), "found.db"))
	heads[0].Version = ""
	b2.sim.ResetStats()
	found := b2.src.Archive(context.Background(), heads, 1, nil)[0]
	if found.Err != nil || found.Events != sum.Events || found.RoomVersion != sum.RoomVersion {
		t.Fatalf("archive finding the version: %+v, with it given: %+v", found, sum)
	}
	if b2.sim.Count("fed.event") == 0 {
		t.Fatal("without a listed version the archive found it without asking /event: the test no longer shows the saving")
	}
}

// TestArchiveRefusesAListedVersionTheCreateEventContradicts: a version from the admin API that
// the room's m.room.create does not carry stops the room's archive with both versions named.
func TestArchiveRefusesAListedVersionTheCreateEventContradicts(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 22, Users: 4, Rooms: 1, MessagesPerRoom: 20, NoV1Room: true}})
	var room *world.Room
	for _, r := range b.servedRooms() {
		if r.Version == "10" {
			room = r
			break
		}
	}
	if room == nil {
		t.Skip("the world has no version 10 room")
	}
	// Versions 9 and 10 share event format and redaction: only the create event tells them apart.
	sum := b.src.Archive(context.Background(), []RoomHeads{{RoomID: room.ID, Heads: room.ForwardExtremities(), Version: "9"}}, 1, nil)[0]
	if sum.Err == nil || !strings.Contains(sum.Err.Error(), `room version "9"`) || !strings.Contains(sum.Err.Error(), `says "10"`) {
		t.Fatalf("archive of a version 10 room listed as 9: %+v", sum)
	}
	if sum.Complete {
		t.Fatal("the room was marked complete")
	}
}
