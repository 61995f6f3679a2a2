package verify

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/export"
)

// StateKey names one piece of room state.
type StateKey struct {
	Type     string `json:"type"`
	StateKey string `json:"state_key"`
}

// Room is what the source says about one room.
type Room struct {
	RoomID      string
	RoomVersion string
	// State maps each piece of the current state to its event ID; nil when unknown.
	State map[StateKey]string
	// JoinedLocalMembers are the local users joined now; verify asks the target as one of them.
	JoinedLocalMembers []string
	// Heads are the room's forward extremities, when known; verify adds the cache's own.
	Heads []string
}

// SourceEvent is one event the source holds for a room.
type SourceEvent struct {
	ID         string
	Type       string
	StateKey   *string
	Depth      int64
	Status     eventcache.Status // the cache's status: verified, redacted, pruned, rejected
	PrevEvents []string
	AuthEvents []string
	Redacts    string // for m.room.redaction: the event it redacts
}

// Rooms lists the rooms to verify and reads what the source knows of each.
type Rooms interface {
	RoomIDs(ctx context.Context) ([]string, error)
	Room(ctx context.Context, roomID string) (Room, error)
}

// Events lists every event the source holds for a room, in any order.
type Events interface {
	Events(ctx context.Context, r Room) ([]SourceEvent, error)
}

// Users lists the local users and reads what the import carries of each.
type Users interface {
	UserIDs(ctx context.Context) ([]string, error)
	User(ctx context.Context, userID string) (*export.UserFile, error)
}

// Sessions reads the access tokens the target keeps per device; *conduit.DB (opened read-only,
// which works while Conduit runs) is one.
type Sessions interface {
	AccessTokens(user string) (map[string]string, error)
}

// CacheEvents reads a room's events from the shim's event cache (filled by `shim archive` and
// by `shim serve` as Conduit asks).
type CacheEvents struct {
	Cache *eventcache.Cache
	// Refresh, when set, is called before a room is read, to bring the cache up to date from a
	// running Synapse (the shim's archive of the room, from its current forward extremities).
	Refresh func(ctx context.Context, r Room) error
	// Read, when set, replaces Cache and Refresh: it reads the room's events (the JSON of
	// redactions at least) from a cache another process holds, brought up to date there.
	Read func(ctx context.Context, r Room, fn func(eventcache.Event) bool) error
}

// Events implements Events.
func (c *CacheEvents) Events(ctx context.Context, r Room) ([]SourceEvent, error) {
	roomID := r.RoomID
	if c.Refresh != nil && c.Read == nil {
		if err := c.Refresh(ctx, r); err != nil {
			return nil, fmt.Errorf("bringing the cache up to date from Synapse: %w", err)
		}
	}
	read := func(fn func(eventcache.Event) bool) error { return c.Cache.RoomEvents(roomID, fn) }
	if c.Read != nil {
		read = func(fn func(eventcache.Event) bool) error { return c.Read(ctx, r, fn) }
	}
	var out []SourceEvent
	err := read(func(e eventcache.Event) bool {
		se := SourceEvent{ID: e.ID, Type: e.Type, StateKey: e.StateKey, Depth: e.Depth, Status: e.Status,
			PrevEvents: e.PrevEvents, AuthEvents: e.AuthEvents}
		if e.Type == "m.room.redaction" {
			se.Redacts = redactsOf(e.JSON)
		}
		out = append(out, se)
		return ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	return out, err
}

// redactsOf returns the event a redaction redacts: top-level "redacts" (rooms v1–v10) or
// content.redacts (v11).
func redactsOf(pdu []byte) string {
	if r := gjson.GetBytes(pdu, "redacts"); r.Type == gjson.String {
		return r.String()
	}
	return gjson.GetBytes(pdu, "content.redacts").String()
}

// stateFromClientEvents maps client-format state events (with event_id) to a state map.
func stateFromClientEvents(events []json.RawMessage) (map[StateKey]string, error) {
	st := make(map[StateKey]string, len(events))
	for _, raw := range events {
		r := gjson.ParseBytes(raw)
		id, typ, sk := r.Get("event_id"), r.Get("type"), r.Get("state_key")
		if id.Type != gjson.String || typ.Type != gjson.String || sk.Type != gjson.String {
			return nil, fmt.Errorf("state event without event_id, type or state_key: %.200s", raw)
		}
		st[StateKey{typ.String(), sk.String()}] = id.String()
	}
	return st, nil
}
