package synapseclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
)

// RoomSummary is one entry of the rooms list; rooms that lost every local member have null
// names, join rules and history visibility.
type RoomSummary struct {
	RoomID             string          `json:"room_id"`
	Name               *string         `json:"name"`
	CanonicalAlias     *string         `json:"canonical_alias"`
	JoinedMembers      int             `json:"joined_members"`
	JoinedLocalMembers int             `json:"joined_local_members"`
	Version            string          `json:"version"`
	Creator            string          `json:"creator"`
	Encryption         *string         `json:"encryption"`
	Federatable        Bool            `json:"federatable"`
	Public             Bool            `json:"public"`
	JoinRules          *string         `json:"join_rules"`
	GuestAccess        *string         `json:"guest_access"`
	HistoryVisibility  *string         `json:"history_visibility"`
	StateEvents        int             `json:"state_events"`
	RoomType           *string         `json:"room_type"`
	Raw                json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the fields and keeps the raw bytes.
func (r *RoomSummary) UnmarshalJSON(b []byte) error {
	type plain RoomSummary
	return decodeKeepingRaw(b, (*plain)(r), &r.Raw)
}

// ListRoomsOptions selects a page of rooms.
type ListRoomsOptions struct {
	From    int    // offset: next_batch of the previous page
	Limit   int    // 0 for Synapse's default (100)
	OrderBy string // optional, e.g. "name", "version"
	Dir     string // optional "f" or "b"
}

// RoomPage is one page of rooms; NextBatch is nil on the last page.
type RoomPage struct {
	Rooms      []RoomSummary `json:"rooms"`
	Offset     int           `json:"offset"`
	TotalRooms int           `json:"total_rooms"`
	NextBatch  *int          `json:"-"`
}

// ListRooms returns one page of the rooms Synapse keeps statistics for.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#list-room-api
func (a *AdminClient) ListRooms(ctx context.Context, opts ListRoomsOptions) (*RoomPage, error) {
	q := url.Values{}
	if opts.From > 0 {
		q.Set("from", strconv.Itoa(opts.From))
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.OrderBy != "" {
		q.Set("order_by", opts.OrderBy)
	}
	if opts.Dir != "" {
		q.Set("dir", opts.Dir)
	}
	var out struct {
		RoomPage
		NextBatch json.RawMessage `json:"next_batch"`
	}
	const p = "/_synapse/admin/v1/rooms"
	if err := a.get(ctx, p, q.Encode(), &out); err != nil {
		return nil, err
	}
	page := out.RoomPage
	tok, err := flexToken(out.NextBatch)
	if err != nil {
		return nil, fmt.Errorf("synapseclient: GET %s: next_batch: %w", p, err)
	}
	if tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil {
			return nil, fmt.Errorf("synapseclient: GET %s: next_batch %q is not an offset", p, tok)
		}
		page.NextBatch = &n
	}
	return &page, nil
}

// AllRooms pages through every room of the rooms list.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#list-room-api
func (a *AdminClient) AllRooms(ctx context.Context) ([]RoomSummary, error) {
	var all []RoomSummary
	err := offsetPages("/_synapse/admin/v1/rooms", func(from int) (*int, int, error) {
		page, err := a.ListRooms(ctx, ListRoomsOptions{Limit: a.pageSize, From: from})
		if err != nil {
			return nil, 0, err
		}
		all = append(all, page.Rooms...)
		return page.NextBatch, len(page.Rooms), nil
	})
	if err != nil {
		return nil, err
	}
	return all, nil
}

// RoomDetails is the room list entry plus the details endpoint's extra fields.
type RoomDetails struct {
	RoomSummary
	Topic              *string `json:"topic"`
	Avatar             *string `json:"avatar"`
	JoinedLocalDevices int     `json:"joined_local_devices"`
	Forgotten          Bool    `json:"forgotten"`
}

// UnmarshalJSON decodes both parts and keeps the raw bytes in Raw.
func (r *RoomDetails) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &r.RoomSummary); err != nil {
		return err
	}
	var extra struct {
		Topic              *string `json:"topic"`
		Avatar             *string `json:"avatar"`
		JoinedLocalDevices int     `json:"joined_local_devices"`
		Forgotten          Bool    `json:"forgotten"`
	}
	if err := json.Unmarshal(b, &extra); err != nil {
		return err
	}
	r.Topic, r.Avatar, r.JoinedLocalDevices, r.Forgotten = extra.Topic, extra.Avatar, extra.JoinedLocalDevices, extra.Forgotten
	return nil
}

// Room returns one room's details.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-details-api
func (a *AdminClient) Room(ctx context.Context, roomID string) (*RoomDetails, error) {
	var out RoomDetails
	if err := a.get(ctx, "/_synapse/admin/v1/rooms/{roomId}", "", &out, roomID); err != nil {
		return nil, err
	}
	return &out, nil
}

// RoomState returns a room's current state in client format (no signatures, hashes or edges:
// not usable as PDUs), each event as received.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-state-api
func (a *AdminClient) RoomState(ctx context.Context, roomID string) ([]json.RawMessage, error) {
	var out struct {
		State []json.RawMessage `json:"state"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/rooms/{roomId}/state", "", &out, roomID); err != nil {
		return nil, err
	}
	return nonNil(out.State), nil
}

// RoomMembers lists the users currently joined to a room, local and remote.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-members-api
func (a *AdminClient) RoomMembers(ctx context.Context, roomID string) ([]string, error) {
	var out struct {
		Members []string `json:"members"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/rooms/{roomId}/members", "", &out, roomID); err != nil {
		return nil, err
	}
	return nonNil(out.Members), nil
}

// ForwardExtremity is one of a room's newest events (a good seed for backfill and state_ids).
type ForwardExtremity struct {
	EventID    string `json:"event_id"`
	StateGroup int64  `json:"state_group"`
	Depth      int64  `json:"depth"`
	ReceivedTS int64  `json:"received_ts"`
}

// ForwardExtremities lists a room's forward extremities.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#check-for-forward-extremities
func (a *AdminClient) ForwardExtremities(ctx context.Context, roomID string) ([]ForwardExtremity, error) {
	var out struct {
		Results []ForwardExtremity `json:"results"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/rooms/{roomId}/forward_extremities", "", &out, roomID); err != nil {
		return nil, err
	}
	return nonNil(out.Results), nil
}
