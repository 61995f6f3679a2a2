package synapseclient

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
)

// MessagesOptions pages through a room's timeline with the admin messages API.
type MessagesOptions struct {
	From  string // pagination token; "" starts at the room's start (dir f) or end (dir b)
	To    string
	Dir   string // "f" or "b"; "" for Synapse's default
	Limit int    // 0 for Synapse's default (10)
}

// MessagesPage is one page of the admin messages API in federation format. End is "" when
// there is nothing more.
type MessagesPage struct {
	Chunk []PDU
	State []PDU
	Start string
	End   string
}

// RoomMessages returns a page of a room's events in federation format (the raw flag), without
// visibility filtering; Synapse >= 1.68. Events carry event_id and unsigned, which are not part of
// the signed PDU.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#room-messages-api
func (a *AdminClient) RoomMessages(ctx context.Context, roomID string, opts MessagesOptions) (*MessagesPage, error) {
	const template = "/_synapse/admin/v1/rooms/{roomId}/messages"
	if err := a.needToken("GET " + template); err != nil {
		return nil, err
	}
	if err := a.requireVersion(ctx, "GET "+template, VersionAdminRoomMessages); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("raw", "true")
	if opts.From != "" {
		q.Set("from", opts.From)
	}
	if opts.To != "" {
		q.Set("to", opts.To)
	}
	if opts.Dir != "" {
		q.Set("dir", opts.Dir)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	c := a.call("GET", template, q.Encode(), nil, roomID)
	body, err := a.t.do(ctx, c)
	if err != nil {
		return nil, err
	}
	root, err := parseObject(c.endpoint, body)
	if err != nil {
		return nil, err
	}
	page := &MessagesPage{Start: root.Get("start").String(), End: root.Get("end").String()}
	if page.Chunk, err = parsePDUList(c.endpoint, body, root, "chunk", true); err != nil {
		return nil, err
	}
	if page.State, err = parsePDUList(c.endpoint, body, root, "state", false); err != nil {
		return nil, err
	}
	for _, list := range [][]PDU{page.Chunk, page.State} {
		for i := range list {
			if list[i], err = withoutAddedRoomID(list[i]); err != nil {
				return nil, fmt.Errorf("synapseclient: %s: %w", c.endpoint, err)
			}
		}
	}
	return page, nil
}

// FetchEvent returns one event as Synapse stored it (full PDU with signatures, hashes, edges),
// without visibility filtering; Synapse >= 1.140.
// https://element-hq.github.io/synapse/latest/admin_api/fetch_event.html
func (a *AdminClient) FetchEvent(ctx context.Context, eventID string) (*PDU, error) {
	const template = "/_synapse/admin/v1/fetch_event/{eventId}"
	if err := a.needToken("GET " + template); err != nil {
		return nil, err
	}
	if err := a.requireVersion(ctx, "GET "+template, VersionFetchEvent); err != nil {
		return nil, err
	}
	c := a.call("GET", template, "", nil, eventID)
	body, err := a.t.do(ctx, c)
	if err != nil {
		return nil, err
	}
	root, err := parseObject(c.endpoint, body)
	if err != nil {
		return nil, err
	}
	ev := root.Get("event")
	if !ev.IsObject() {
		return nil, fmt.Errorf("synapseclient: %s: answer has no event object", c.endpoint)
	}
	p, err := pduFromResult(rawOf(body, ev), ev)
	if err == nil {
		p, err = withoutAddedRoomID(p)
	}
	if err != nil {
		return nil, fmt.Errorf("synapseclient: %s: %w", c.endpoint, err)
	}
	return &p, nil
}
