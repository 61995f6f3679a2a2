// Package conduitlike is a federation consumer that backfills a room the way Conduit does: it asks
// GET /backfill?v=<oldest known event>&limit=100 again and again, fetches each missing auth event
// with GET /event, and checks every event independently (format, every signature, content hash,
// auth rules against the event's own auth events) before it keeps it.
package conduitlike

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// BackfillLimit is the limit Conduit asks for on every /backfill.
const BackfillLimit = 100

// Keys gives the public key a server signed with, valid at a time; ok is false when unknown or expired.
type Keys interface {
	PublicKey(server, keyID string, atTS int64) (pub ed25519.PublicKey, ok bool)
}

// StaticKeys is a fixed key set: server → key ID → key, with an optional expiry (0 = none).
type StaticKeys map[string]map[string]StaticKey

// StaticKey is one public key and the time (ms) from which it no longer verifies, or 0.
type StaticKey struct {
	Public    ed25519.PublicKey
	ExpiredTS int64
}

// PublicKey implements Keys.
func (s StaticKeys) PublicKey(server, keyID string, atTS int64) (ed25519.PublicKey, bool) {
	k, ok := s[server][keyID]
	if !ok || (k.ExpiredTS != 0 && atTS >= k.ExpiredTS) {
		return nil, false
	}
	return k.Public, true
}

// Add records a key.
func (s StaticKeys) Add(server, keyID string, pub ed25519.PublicKey, expiredTS int64) {
	if s[server] == nil {
		s[server] = map[string]StaticKey{}
	}
	s[server][keyID] = StaticKey{Public: pub, ExpiredTS: expiredTS}
}

// WorldKeys are the keys of a generated world's servers: the local server's current and rotated
// keys and the remote server's key.
func WorldKeys(w *world.World) StaticKeys {
	keys := StaticKeys{}
	keys.Add(w.ServerName, w.SigningKey.KeyID, w.SigningKey.Public, 0)
	keys.Add(w.RemoteServerName, w.RemoteKey.KeyID, w.RemoteKey.Public, 0)
	for _, k := range w.OldKeys {
		keys.Add(w.ServerName, k.KeyID, k.Public, k.ExpiredTS)
	}
	return keys
}

// Consumer backfills rooms from one federation peer, signing its requests as Identity.
type Consumer struct {
	Identity    *signing.Identity // the requesting server: Conduit holding the old server name
	Destination string            // the server name the requests are addressed to
	BaseURL     string            // where the peer listens, e.g. the shim's URL
	Keys        Keys
	HTTP        *http.Client
	// MaxRequests bounds one room's backfill, so a peer that never reaches the create event cannot
	// keep the consumer going forever. 0 means 100,000.
	MaxRequests int
}

// Outcome is what happened to one received event.
type Outcome string

// Outcomes of checking an event.
const (
	Verified Outcome = "verified" // format, signatures, content hash and auth rules all pass
	Redacted Outcome = "redacted" // signatures and auth pass but the content hash does not: kept redacted, as Conduit does
	Rejected Outcome = "rejected" // format, signature or auth rules fail: dropped
)

// Received is one event as the consumer took it in, in the order it was received.
type Received struct {
	EventID string
	Type    string
	Depth   int64
	Outcome Outcome
	Reason  string // why it was redacted or rejected
	Via     string // "backfill" or "event" (fetched as a missing auth event)
}

// Result is the outcome of backfilling one room.
type Result struct {
	RoomID        string
	Timeline      []Received // backfilled events, newest first, each at most once
	AuthFetched   []Received // auth events fetched with /event that were not (yet) in the timeline
	Requests      int
	ReachedCreate bool
}

// Count returns how many timeline events had outcome o.
func (r *Result) Count(o Outcome) int {
	n := 0
	for _, e := range r.Timeline {
		if e.Outcome == o {
			n++
		}
	}
	return n
}

// Room is one room as the consumer holds it: the events that passed the checks, which of them are
// in the timeline, and which were rejected. A Room is not safe for concurrent use.
type Room struct {
	id       string
	version  gmsl.IRoomVersion
	known    map[string]gmsl.PDU // events that passed the checks (verified or redacted)
	timeline map[string]bool     // events in the timeline; the others in known are outliers (auth events)
	failed   map[string]string   // events that were rejected, with the reason
	result   *Result
}

// NewRoom starts an empty room of a version gomatrixserverlib knows.
func NewRoom(roomID, roomVersion string) (*Room, error) {
	ver, err := gmsl.GetRoomVersion(gmsl.RoomVersion(roomVersion))
	if err != nil {
		return nil, fmt.Errorf("room %s: %w", roomID, err)
	}
	return &Room{id: roomID, version: ver, known: map[string]gmsl.PDU{}, timeline: map[string]bool{},
		failed: map[string]string{}, result: &Result{RoomID: roomID}}, nil
}

// Result is what happened in the room so far: the timeline as received, the auth events fetched,
// the requests made.
func (r *Room) Result() *Result { return r.result }

// Event returns an event that passed the checks (timeline or outlier).
func (r *Room) Event(id string) (gmsl.PDU, bool) {
	p, ok := r.known[id]
	return p, ok
}

// AddOutlier records an event checked elsewhere (such as a send_join answer) as known, outside the
// timeline, so later events can use it as an auth event without fetching it.
func (r *Room) AddOutlier(p gmsl.PDU) { r.known[p.EventID()] = p }

// AddTimeline records an event checked elsewhere (such as the room's join) as part of the timeline,
// so a /backfill answer that repeats it is skipped.
func (r *Room) AddTimeline(p gmsl.PDU) {
	r.known[p.EventID()] = p
	r.timeline[p.EventID()] = true
}

// DropFromTimeline takes an event out of the timeline (it stays known as an outlier), so a later
// /backfill answer takes it in again; for a consumer that discards part of a page.
func (r *Room) DropFromTimeline(id string) { delete(r.timeline, id) }

// BackfillRoom backfills a room from its newest events (the heads: Conduit's join stands on the
// room's forward extremities, and the shim expands the join to them) until m.room.create arrives.
// The heads are fetched with /event, the first /backfill names them all, and every later one names
// only the oldest event kept, as Conduit does. It returns an error only when the peer cannot be
// asked any further; per-event outcomes are in the Result.
func (c *Consumer) BackfillRoom(ctx context.Context, roomID, roomVersion string, heads []string) (*Result, error) {
	r, err := NewRoom(roomID, roomVersion)
	if err != nil {
		return nil, err
	}
	if len(heads) == 0 {
		return nil, fmt.Errorf("room %s: no event to start from", roomID)
	}
	maxReq := c.MaxRequests
	if maxReq == 0 {
		maxReq = 100_000
	}
	var oldest Received
	for _, head := range heads {
		raw, err := c.fetchEvent(ctx, r, head)
		if err != nil {
			return r.result, err
		}
		rec := c.Accept(ctx, r, raw, "event")
		if rec.Outcome == Rejected {
			return r.result, fmt.Errorf("room %s: the head %s is rejected: %s", roomID, head, rec.Reason)
		}
		r.result.Timeline = append(r.result.Timeline, rec)
		r.timeline[rec.EventID] = true
		if rec.Type == spec.MRoomCreate {
			r.result.ReachedCreate = true
		}
		oldest = rec
	}
	from := heads
	for !r.result.ReachedCreate && r.result.Requests < maxReq {
		added, err := c.BackfillPage(ctx, r, from)
		if err != nil {
			return r.result, err
		}
		kept := 0
		for _, rec := range added {
			if rec.Outcome != Rejected {
				oldest = rec // Conduit prepends each one, so the last kept is its oldest
				kept++
			}
		}
		if r.result.ReachedCreate {
			return r.result, nil
		}
		from = []string{oldest.EventID}
		if kept == 0 {
			return r.result, fmt.Errorf("room %s: backfill from %s brought nothing new; the create event was never reached", roomID, oldest.EventID)
		}
	}
	if r.result.ReachedCreate {
		return r.result, nil
	}
	return r.result, fmt.Errorf("room %s: gave up after %d requests without reaching the create event", roomID, maxReq)
}

// BackfillPage asks /backfill?v=<from>&limit=100 once and takes in each event not yet in the
// timeline (checked, with missing auth events fetched by /event), in the order the peer answered:
// Conduit prepends each before the previous one. It returns those events, rejected ones included;
// the kept ones join the timeline and the Result.
func (c *Consumer) BackfillPage(ctx context.Context, r *Room, from []string) ([]Received, error) {
	pdus, err := c.backfill(ctx, r, from)
	if err != nil {
		return nil, err
	}
	var added []Received
	for _, raw := range pdus {
		id, err := r.eventID(raw)
		if err != nil {
			rec := Received{Outcome: Rejected, Reason: err.Error(), Via: "backfill"}
			r.result.Timeline = append(r.result.Timeline, rec)
			added = append(added, rec)
			continue
		}
		if r.timeline[id] {
			continue // "We already know": Conduit skips events already in its timeline
		}
		if _, ok := r.failed[id]; ok {
			continue
		}
		// An outlier fetched earlier as an auth event is kept as it was checked then.
		rec := c.Accept(ctx, r, raw, "backfill")
		rec.Via = "backfill"
		r.result.Timeline = append(r.result.Timeline, rec)
		r.timeline[id] = rec.Outcome != Rejected
		added = append(added, rec)
		if rec.Type == spec.MRoomCreate && rec.Outcome != Rejected {
			r.result.ReachedCreate = true
		}
	}
	return added, nil
}

// eventID computes the ID of a PDU in this room's version.
func (r *Room) eventID(raw json.RawMessage) (string, error) {
	return signing.EventID(string(r.version.Version()), raw)
}

// Accept checks one PDU as Conduit's handle_outlier_pdu does and remembers it when it passes; missing
// auth events are fetched with /event first. It does not put the event in the timeline.
func (c *Consumer) Accept(ctx context.Context, r *Room, raw json.RawMessage, via string) Received {
	rec := Received{Via: via}
	id, err := r.eventID(raw)
	if err != nil {
		rec.Outcome, rec.Reason = Rejected, "no event ID: "+err.Error()
		return rec
	}
	rec.EventID = id
	if p, ok := r.known[id]; ok {
		rec.Type, rec.Depth, rec.Outcome = p.Type(), p.Depth(), outcomeOf(p)
		return rec
	}
	if reason, ok := r.failed[id]; ok {
		rec.Outcome, rec.Reason = Rejected, reason
		return rec
	}
	reject := func(reason string) Received {
		r.failed[id] = reason
		rec.Outcome, rec.Reason = Rejected, reason
		return rec
	}
	// Format and content hash: gomatrixserverlib redacts an event whose hash does not match.
	pdu, err := r.version.NewEventFromUntrustedJSON(raw)
	if err != nil {
		return reject("format: " + err.Error())
	}
	rec.Type, rec.Depth = pdu.Type(), pdu.Depth()
	if pdu.RoomID().String() != r.id {
		return reject(fmt.Sprintf("event of room %s in room %s", pdu.RoomID(), r.id))
	}
	if err := c.VerifySignatures(ctx, pdu); err != nil {
		return reject("signature: " + err.Error())
	}
	// Auth rules against the event's own auth events, fetching those it lacks (Conduit's handle_outlier_pdu).
	var authPDUs []gmsl.PDU
	for _, aid := range pdu.AuthEventIDs() {
		ap, err := c.authEvent(ctx, r, aid)
		if err != nil {
			return reject(fmt.Sprintf("auth event %s: %v", aid, err))
		}
		authPDUs = append(authPDUs, ap)
	}
	ae, err := gmsl.NewAuthEvents(authPDUs)
	if err != nil {
		return reject("auth events: " + err.Error())
	}
	if err := gmsl.Allowed(pdu, ae, UserIDForSender); err != nil {
		return reject("auth rules: " + err.Error())
	}
	r.known[id] = pdu
	rec.Outcome = outcomeOf(pdu)
	if rec.Outcome == Redacted {
		rec.Reason = "content hash does not match"
	}
	return rec
}

func outcomeOf(p gmsl.PDU) Outcome {
	if p.Redacted() {
		return Redacted
	}
	return Verified
}

// authEvent returns a known auth event, or fetches it with /event and checks it.
func (c *Consumer) authEvent(ctx context.Context, r *Room, id string) (gmsl.PDU, error) {
	if p, ok := r.known[id]; ok {
		return p, nil
	}
	if reason, ok := r.failed[id]; ok {
		return nil, errors.New(reason)
	}
	raw, err := c.fetchEvent(ctx, r, id)
	if err != nil {
		return nil, err
	}
	got, err := r.eventID(raw)
	if err != nil || got != id {
		r.failed[id] = fmt.Sprintf("/event returned event %s", got)
		return nil, errors.New(r.failed[id])
	}
	rec := c.Accept(ctx, r, raw, "event")
	r.result.AuthFetched = append(r.result.AuthFetched, rec)
	if rec.Outcome == Rejected {
		return nil, errors.New(rec.Reason)
	}
	return r.known[id], nil
}

type transaction struct {
	Origin string            `json:"origin"`
	PDUs   []json.RawMessage `json:"pdus"`
}

func (c *Consumer) backfill(ctx context.Context, r *Room, from []string) ([]json.RawMessage, error) {
	q := url.Values{"v": from, "limit": {fmt.Sprint(BackfillLimit)}}
	uri := "/_matrix/federation/v1/backfill/" + url.PathEscape(r.id) + "?" + q.Encode()
	var txn transaction
	if err := c.get(ctx, r, uri, &txn); err != nil {
		return nil, err
	}
	return txn.PDUs, nil
}

func (c *Consumer) fetchEvent(ctx context.Context, r *Room, id string) (json.RawMessage, error) {
	var txn transaction
	if err := c.get(ctx, r, "/_matrix/federation/v1/event/"+url.PathEscape(id), &txn); err != nil {
		return nil, err
	}
	if len(txn.PDUs) != 1 {
		return nil, fmt.Errorf("/event/%s returned %d PDUs", id, len(txn.PDUs))
	}
	return txn.PDUs[0], nil
}

// get sends a signed GET for the room and decodes a 200 answer into out.
func (c *Consumer) get(ctx context.Context, r *Room, uri string, out any) error {
	r.result.Requests++
	return c.Request(ctx, http.MethodGet, uri, nil, out)
}

// StatusError is a peer's answer other than 200.
type StatusError struct {
	Method, URI string
	Status      int
	Body        string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URI, e.Status, e.Body)
}

// Request sends a federation request signed as Identity to Destination at BaseURL (body is JSON, or
// nil) and decodes a 200 answer into out; any other status is a *StatusError.
func (c *Consumer) Request(ctx context.Context, method, uri string, body []byte, out any) error {
	x, err := signing.SignRequest(c.Identity, method, c.Destination, uri, body)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+uri, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", x.String())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, uri, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, uri, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Method: method, URI: uri, Status: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, uri, err)
	}
	return nil
}

// VerifySignatures checks the signatures a PDU must carry (gomatrixserverlib decides whose) against
// the consumer's keys, as ruma does: every signature of such a server must verify, at least one.
func (c *Consumer) VerifySignatures(ctx context.Context, p gmsl.PDU) error {
	return gmsl.VerifyEventSignatures(ctx, p, Verifier{c.Keys}, UserIDForSender)
}

// UserIDForSender maps a sender to its user ID (every room version here uses user IDs as senders).
func UserIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// Verifier adapts Keys to gomatrixserverlib's JSONVerifier: every signature by the server whose key
// is known at the event's time must verify, and at least one must (as ruma, which Conduit uses, demands).
type Verifier struct{ Keys Keys }

// VerifyJSONs checks each request's signatures by its server with the keys valid at its time.
func (v Verifier) VerifyJSONs(_ context.Context, reqs []gmsl.VerifyJSONRequest) ([]gmsl.VerifyJSONResult, error) {
	out := make([]gmsl.VerifyJSONResult, len(reqs))
	for i, req := range reqs {
		ids, err := gmsl.ListKeyIDs(string(req.ServerName), req.Message)
		if err != nil {
			out[i].Error = err
			continue
		}
		checked := 0
		for _, id := range ids {
			pub, ok := v.Keys.PublicKey(string(req.ServerName), string(id), int64(req.AtTS))
			if !ok {
				out[i].Error = fmt.Errorf("no valid key %s for %s at %d", id, req.ServerName, req.AtTS)
				break
			}
			if err := gmsl.VerifyJSON(string(req.ServerName), id, pub, req.Message); err != nil {
				out[i].Error = err
				break
			}
			checked++
		}
		if out[i].Error == nil && checked == 0 {
			out[i].Error = fmt.Errorf("no signature by %s", req.ServerName)
		}
	}
	return out, nil
}
