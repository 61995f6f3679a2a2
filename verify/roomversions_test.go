package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/cutover"
	"github.com/transition-matrix/transition-matrix/preflight"
	"github.com/transition-matrix/transition-matrix/roomversions"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// roomsAdmin is a Synapse admin API with one local user and the given rooms, for preflight.
type roomsAdmin struct{ rooms []synapseclient.RoomSummary }

func (a *roomsAdmin) ServerVersion(context.Context) (*synapseclient.ServerVersionInfo, error) {
	return &synapseclient.ServerVersionInfo{ServerVersion: "1.163.2"}, nil
}
func (a *roomsAdmin) AdminUserID(context.Context) (string, error) { return "@admin:example.org", nil }
func (a *roomsAdmin) AllUsers(context.Context) ([]synapseclient.UserSummary, error) {
	return []synapseclient.UserSummary{{Name: alice}}, nil
}
func (a *roomsAdmin) SearchUsers(context.Context, string) ([]synapseclient.SearchUser, error) {
	return nil, nil
}
func (a *roomsAdmin) AllRooms(context.Context) ([]synapseclient.RoomSummary, error) {
	return a.rooms, nil
}
func (a *roomsAdmin) ForwardExtremities(context.Context, string) ([]synapseclient.ForwardExtremity, error) {
	return []synapseclient.ForwardExtremity{{EventID: "$a", Depth: 3}}, nil
}
func (a *roomsAdmin) LocalMediaTotals(context.Context) (*synapseclient.MediaTotals, error) {
	return &synapseclient.MediaTotals{}, nil
}

// keysFederation is Synapse's federation API publishing id's key, for preflight.
type keysFederation struct{ id *signing.Identity }

func (f *keysFederation) Version(context.Context) (*synapseclient.FederationVersion, error) {
	v := &synapseclient.FederationVersion{}
	v.Server.Name, v.Server.Version = "Synapse", "1.163.2"
	return v, nil
}
func (f *keysFederation) ServerKeys(context.Context) (*synapseclient.ServerKeys, error) {
	raw, err := f.id.KeyDocument(time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	var out synapseclient.ServerKeys
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	out.Raw = raw
	return &out, nil
}
func (f *keysFederation) QueryProfile(context.Context, string, string) (*synapseclient.Profile, error) {
	return &synapseclient.Profile{}, nil
}

// TestRoomVersionDecisionsAgree: preflight (a blocker), rejoin and warm (a skipped room), verify
// (a room of an unsupported version) and the demo (a room it accepts the loss of) decide the same
// for every room version, and a room with no version is a version 1 room for all of them.
func TestRoomVersionDecisionsAgree(t *testing.T) {
	versions := []string{"", "1", "2", "3", "5", "6", "11", "12", "13", "org.example.msc9999"}
	admin := &roomsAdmin{}
	for i, v := range versions {
		admin.rooms = append(admin.rooms, synapseclient.RoomSummary{RoomID: roomOf(i), Version: v, JoinedLocalMembers: 1, StateEvents: 5})
	}
	id := &signing.Identity{ServerName: "example.org", Keys: []signing.Key{{ID: "ed25519:a_Test", Seed: bytes.Repeat([]byte{7}, 32)}}}
	ctx := context.Background()
	rep, err := (&preflight.Checker{Admin: admin, Federation: &keysFederation{id: id}, Identity: id, SynapseURL: "http://synapse"}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var blocked []string
	for _, f := range rep.Findings {
		if f.Code == preflight.CodeRoomVersionUnsupported {
			blocked = append(blocked, f.Subject)
		}
	}
	v := &verifier{} // a hostable room then stops at "no local members", before any read
	for i, version := range versions {
		roomID := roomOf(i)
		want := slices.Contains(blocked, roomID) // preflight's answer
		decisions := map[string]bool{
			"rejoin and warm": cutover.SkipReason(version, 1) != "",
			"verify":          v.checkRoom(ctx, Room{RoomID: roomID, RoomVersion: version}).Status == RoomUnsupportedVersion,
			"the demo":        !roomversions.CanHost(version),
		}
		for who, got := range decisions {
			if got != want {
				t.Errorf("room version %q: %s says cannot move = %v, preflight says %v", version, who, got, want)
			}
		}
		if version == "" && !want {
			t.Errorf("a room with no version is movable, but it is a version 1 room")
		}
	}
	if len(blocked) != 3 { // "", "1", "2"
		t.Errorf("preflight blocks %v, want the rooms of versions \"\", 1 and 2", blocked)
	}
}

func roomOf(i int) string { return "!v" + string(rune('a'+i)) + ":example.org" }
