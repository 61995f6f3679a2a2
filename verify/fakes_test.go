package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/transition-matrix/transition-matrix/cutover"
	"github.com/transition-matrix/transition-matrix/exportfmt"
)

// fakeRoom is a room as the fake target holds it.
type fakeRoom struct {
	timeline []string // newest first
	members  []string // who may read it
	state    []cutover.StateEvent
}

// fakeTarget is an in-memory Target.
type fakeTarget struct {
	mu          sync.Mutex
	checkErr    error
	rooms       map[string]*fakeRoom
	failRoom    map[string]error
	profiles    map[string]json.RawMessage
	devices     map[string][]cutover.Device
	accountData map[string]json.RawMessage // user|room|type
	keys        map[string]*cutover.Keys
	backups     map[string]*cutover.KeyBackupVersion
	refuse      map[string]bool // users the target refuses to act as
	pages       int
}

func newFakeTarget() *fakeTarget {
	return &fakeTarget{rooms: map[string]*fakeRoom{}, failRoom: map[string]error{}, profiles: map[string]json.RawMessage{},
		devices: map[string][]cutover.Device{}, accountData: map[string]json.RawMessage{}, keys: map[string]*cutover.Keys{},
		backups: map[string]*cutover.KeyBackupVersion{}}
}

func forbidden() error {
	return &cutover.TargetError{Endpoint: "fake", Status: 403, ErrCode: "M_FORBIDDEN"}
}
func notFound() error {
	return &cutover.TargetError{Endpoint: "fake", Status: 404, ErrCode: "M_NOT_FOUND"}
}

func (f *fakeTarget) Check(context.Context) error { return f.checkErr }

func (f *fakeTarget) room(roomID, user string) (*fakeRoom, error) {
	if err := f.failRoom[roomID]; err != nil {
		return nil, err
	}
	r := f.rooms[roomID]
	if r == nil || !slices.Contains(r.members, user) {
		return nil, forbidden()
	}
	return r, nil
}

func (f *fakeTarget) Messages(_ context.Context, roomID, user, from string, limit int) (*cutover.MessagesPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pages++
	r, err := f.room(roomID, user)
	if err != nil {
		return nil, err
	}
	start := 0
	if from != "" {
		start, _ = strconv.Atoi(from)
	}
	end := min(start+limit, len(r.timeline))
	p := &cutover.MessagesPage{Start: from}
	for _, id := range r.timeline[start:end] {
		p.Chunk = append(p.Chunk, cutover.TimelineEvent{EventID: id})
	}
	if end > start {
		p.End = strconv.Itoa(end)
	}
	return p, nil
}

func (f *fakeTarget) State(_ context.Context, roomID, user string) ([]cutover.StateEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.room(roomID, user)
	if err != nil {
		return nil, err
	}
	return r.state, nil
}

func (f *fakeTarget) Profile(_ context.Context, userID string) (json.RawMessage, error) {
	p, ok := f.profiles[userID]
	if !ok {
		return nil, notFound()
	}
	return p, nil
}

func (f *fakeTarget) Devices(_ context.Context, userID string) ([]cutover.Device, error) {
	if f.refuse[userID] {
		return nil, forbidden()
	}
	return f.devices[userID], nil
}

func (f *fakeTarget) AccountData(_ context.Context, userID, roomID, typ string) (json.RawMessage, error) {
	d, ok := f.accountData[userID+"|"+roomID+"|"+typ]
	if !ok {
		return nil, notFound()
	}
	return d, nil
}

func (f *fakeTarget) QueryKeys(_ context.Context, userID string) (*cutover.Keys, error) {
	if k := f.keys[userID]; k != nil {
		return k, nil
	}
	return &cutover.Keys{}, nil
}

func (f *fakeTarget) KeyBackup(_ context.Context, userID string) (*cutover.KeyBackupVersion, error) {
	if f.refuse[userID] {
		return nil, forbidden()
	}
	return f.backups[userID], nil
}

// memSource is an in-memory Rooms, Events and Users.
type memSource struct {
	rooms  map[string]Room
	events map[string][]SourceEvent
	users  map[string]*exportfmt.UserFile
}

func newMemSource() *memSource {
	return &memSource{rooms: map[string]Room{}, events: map[string][]SourceEvent{}, users: map[string]*exportfmt.UserFile{}}
}

func (m *memSource) RoomIDs(context.Context) ([]string, error) { return sortedKeys(m.rooms), nil }
func (m *memSource) Room(_ context.Context, id string) (Room, error) {
	r, ok := m.rooms[id]
	if !ok {
		return r, errors.New("no such room")
	}
	return r, nil
}
func (m *memSource) Events(_ context.Context, r Room) ([]SourceEvent, error) {
	return slices.Clone(m.events[r.RoomID]), nil
}
func (m *memSource) UserIDs(context.Context) ([]string, error) { return sortedKeys(m.users), nil }
func (m *memSource) User(_ context.Context, id string) (*exportfmt.UserFile, error) {
	u, ok := m.users[id]
	if !ok {
		return nil, errors.New("no such user")
	}
	return u, nil
}

func strp(s string) *string { return &s }

// linearRoom builds a room of n events in a chain: a create event, a join of each member, then
// messages; it returns the source's events (oldest first) and a target holding all of them.
func linearRoom(roomID string, n int, members ...string) (Room, []SourceEvent) {
	var evs []SourceEvent
	add := func(typ string, sk *string) string {
		id := fmt.Sprintf("$%s-%03d", roomID[1:2], len(evs))
		e := SourceEvent{ID: id, Type: typ, StateKey: sk, Depth: int64(len(evs) + 1), Status: "verified"}
		if len(evs) > 0 {
			e.PrevEvents = []string{evs[len(evs)-1].ID}
			e.AuthEvents = []string{evs[0].ID}
		}
		evs = append(evs, e)
		return id
	}
	st := map[StateKey]string{}
	st[StateKey{"m.room.create", ""}] = add("m.room.create", strp(""))
	for _, m := range members {
		st[StateKey{"m.room.member", m}] = add("m.room.member", strp(m))
	}
	for len(evs) < n {
		add("m.room.message", nil)
	}
	return Room{RoomID: roomID, RoomVersion: "10", State: st, JoinedLocalMembers: members, Heads: []string{evs[len(evs)-1].ID}}, evs
}

// targetRoom is the target's copy of a source room: every event, newest first, and its state.
func targetRoom(r Room, evs []SourceEvent) *fakeRoom {
	fr := &fakeRoom{members: slices.Clone(r.JoinedLocalMembers)}
	for i := len(evs) - 1; i >= 0; i-- {
		fr.timeline = append(fr.timeline, evs[i].ID)
	}
	for k, id := range r.State {
		fr.state = append(fr.state, cutover.StateEvent{EventID: id, Type: k.Type, StateKey: k.StateKey})
	}
	return fr
}
