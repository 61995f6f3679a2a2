package synapseclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/transition-matrix/transition-matrix/signing"
)

// FederationAPI is the part of Synapse's federation API the shim reads, asked as the server
// itself; FederationClient implements it and tests can fake it.
type FederationAPI interface {
	Backfill(ctx context.Context, roomID string, eventIDs []string, limit int) (*Transaction, error)
	Event(ctx context.Context, eventID string) (*Transaction, error)
	GetMissingEvents(ctx context.Context, roomID string, req MissingEventsRequest) ([]PDU, error)
	StateIDs(ctx context.Context, roomID, eventID string) (*StateIDs, error)
	State(ctx context.Context, roomID, eventID string) (*State, error)
	EventAuth(ctx context.Context, roomID, eventID string) ([]PDU, error)
	MakeJoin(ctx context.Context, roomID, userID string, roomVersions []string) (*MakeJoinResponse, error)
	ServerKeys(ctx context.Context) (*ServerKeys, error)
	Version(ctx context.Context) (*FederationVersion, error)
}

var _ FederationAPI = (*FederationClient)(nil)

// FederationClient talks to Synapse's federation listener signed as Synapse itself: X-Matrix with
// origin = destination = the server name, by the current signing key.
type FederationClient struct {
	t          *transport
	base       *url.URL
	id         *signing.Identity
	serverName string
}

func (f *FederationClient) xmatrix(req *http.Request, uri string, body []byte) error {
	if f.id == nil {
		return fmt.Errorf("%w: Config.Identity is nil, federation requests cannot be signed", ErrNotConfigured)
	}
	x, err := signing.SignRequest(f.id, req.Method, f.serverName, uri, body)
	if err != nil {
		return fmt.Errorf("signing the request: %w", err)
	}
	req.Header.Set("Authorization", x.String())
	return nil
}

func (f *FederationClient) do(ctx context.Context, method, template, query string, body []byte, args ...string) (*call, []byte, error) {
	c := &call{endpoint: method + " " + template, method: method, base: f.base, path: fillPath(template, args...), query: query,
		body: body, auth: f.xmatrix, idempotent: true} // every federation read here is side-effect free
	if f.id == nil {
		return c, nil, fmt.Errorf("synapseclient: %s: %w: Config.Identity is nil", c.endpoint, ErrNotConfigured)
	}
	out, err := f.t.do(ctx, c)
	return c, out, err
}

// Backfill asks for up to limit events before (and including) eventIDs, newest first; Synapse
// caps limit at 100 and needs at least one event ID.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1backfillroomid
func (f *FederationClient) Backfill(ctx context.Context, roomID string, eventIDs []string, limit int) (*Transaction, error) {
	const template = "/_matrix/federation/v1/backfill/{roomId}"
	if len(eventIDs) == 0 || limit <= 0 {
		return nil, fmt.Errorf("synapseclient: GET %s: need at least one event ID and a positive limit", template)
	}
	var q strings.Builder
	for _, id := range eventIDs {
		q.WriteString("v=")
		q.WriteString(escape(id))
		q.WriteByte('&')
	}
	q.WriteString("limit=")
	q.WriteString(strconv.Itoa(limit))
	c, body, err := f.do(ctx, "GET", template, q.String(), nil, roomID)
	if err != nil {
		return nil, err
	}
	return parseTransaction(c.endpoint, body)
}

// Event fetches one event; the transaction holds exactly one PDU. An unknown event is an error
// wrapping ErrNotFound (Synapse answers 404 with the body `""`).
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1eventeventid
func (f *FederationClient) Event(ctx context.Context, eventID string) (*Transaction, error) {
	c, body, err := f.do(ctx, "GET", "/_matrix/federation/v1/event/{eventId}", "", nil, eventID)
	if err != nil {
		return nil, err
	}
	tx, err := parseTransaction(c.endpoint, body)
	if err != nil {
		return nil, err
	}
	if len(tx.PDUs) != 1 {
		return nil, fmt.Errorf("synapseclient: %s: answer holds %d PDUs, want 1", c.endpoint, len(tx.PDUs))
	}
	return tx, nil
}

// MissingEventsRequest is the body of get_missing_events. Synapse ignores MinDepth and caps Limit at 20.
type MissingEventsRequest struct {
	EarliestEvents []string `json:"earliest_events"`
	LatestEvents   []string `json:"latest_events"`
	Limit          int      `json:"limit"`
	MinDepth       int64    `json:"min_depth"`
}

// GetMissingEvents walks prev_events back from LatestEvents, stopping at EarliestEvents; Synapse
// returns the events oldest first, without LatestEvents themselves.
// https://spec.matrix.org/v1.16/server-server-api/#post_matrixfederationv1get_missing_eventsroomid
func (f *FederationClient) GetMissingEvents(ctx context.Context, roomID string, req MissingEventsRequest) ([]PDU, error) {
	if req.EarliestEvents == nil {
		req.EarliestEvents = []string{}
	}
	if req.LatestEvents == nil {
		req.LatestEvents = []string{}
	}
	if req.Limit <= 0 {
		req.Limit = 10
	}
	reqBody, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	c, body, err := f.do(ctx, "POST", "/_matrix/federation/v1/get_missing_events/{roomId}", "", reqBody, roomID)
	if err != nil {
		return nil, err
	}
	root, err := parseObject(c.endpoint, body)
	if err != nil {
		return nil, err
	}
	return parsePDUList(c.endpoint, body, root, "events", true)
}

// StateIDs lists the state before an event and that state's auth chain, by event ID.
type StateIDs struct {
	PDUIDs       []string `json:"pdu_ids"`
	AuthChainIDs []string `json:"auth_chain_ids"`
}

// StateIDs returns the IDs of the room state before eventID and of its auth chain.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1state_idsroomid
func (f *FederationClient) StateIDs(ctx context.Context, roomID, eventID string) (*StateIDs, error) {
	c, body, err := f.do(ctx, "GET", "/_matrix/federation/v1/state_ids/{roomId}", "event_id="+escape(eventID), nil, roomID)
	if err != nil {
		return nil, err
	}
	var out StateIDs
	if err := decode(c.endpoint, body, &out); err != nil {
		return nil, err
	}
	out.PDUIDs, out.AuthChainIDs = nonNil(out.PDUIDs), nonNil(out.AuthChainIDs)
	return &out, nil
}

// State is the room state before an event and its auth chain, as full PDUs.
type State struct {
	PDUs      []PDU
	AuthChain []PDU
}

// State returns the room state before eventID and its auth chain as full PDUs.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1stateroomid
func (f *FederationClient) State(ctx context.Context, roomID, eventID string) (*State, error) {
	c, body, err := f.do(ctx, "GET", "/_matrix/federation/v1/state/{roomId}", "event_id="+escape(eventID), nil, roomID)
	if err != nil {
		return nil, err
	}
	root, err := parseObject(c.endpoint, body)
	if err != nil {
		return nil, err
	}
	var st State
	if st.PDUs, err = parsePDUList(c.endpoint, body, root, "pdus", true); err != nil {
		return nil, err
	}
	if st.AuthChain, err = parsePDUList(c.endpoint, body, root, "auth_chain", true); err != nil {
		return nil, err
	}
	return &st, nil
}

// EventAuth returns the full auth chain of an event (Synapse: not just its direct auth events), unordered.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1event_authroomideventid
func (f *FederationClient) EventAuth(ctx context.Context, roomID, eventID string) ([]PDU, error) {
	c, body, err := f.do(ctx, "GET", "/_matrix/federation/v1/event_auth/{roomId}/{eventId}", "", nil, roomID, eventID)
	if err != nil {
		return nil, err
	}
	root, err := parseObject(c.endpoint, body)
	if err != nil {
		return nil, err
	}
	return parsePDUList(c.endpoint, body, root, "auth_chain", true)
}

// MakeJoinResponse is a join event template (not signed, not hashed) and the room's version.
type MakeJoinResponse struct {
	RoomVersion string
	Event       json.RawMessage // the template as received
}

// MakeJoin asks for a join template for userID, offering roomVersions (Synapse treats none as ["1"]).
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1make_joinroomiduserid
func (f *FederationClient) MakeJoin(ctx context.Context, roomID, userID string, roomVersions []string) (*MakeJoinResponse, error) {
	parts := make([]string, 0, len(roomVersions))
	for _, v := range roomVersions {
		parts = append(parts, "ver="+escape(v))
	}
	c, body, err := f.do(ctx, "GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", strings.Join(parts, "&"), nil, roomID, userID)
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
	out := &MakeJoinResponse{Event: json.RawMessage(rawOf(body, ev))}
	// Synapse omits room_version only for v1 rooms of very old servers.
	if rv := root.Get("room_version"); rv.Type == gjson.String {
		out.RoomVersion = rv.String()
	} else {
		out.RoomVersion = "1"
	}
	return out, nil
}

// ServerKeys is the server's published key document; Raw is exactly as received (signatures intact).
type ServerKeys struct {
	Raw           json.RawMessage                     `json:"-"`
	ServerName    string                              `json:"server_name"`
	ValidUntilTS  int64                               `json:"valid_until_ts"`
	VerifyKeys    map[signing.KeyID]VerifyKey         `json:"verify_keys"`
	OldVerifyKeys map[signing.KeyID]OldVerifyKey      `json:"old_verify_keys"`
	Signatures    map[string]map[signing.KeyID]string `json:"signatures"`
}

// VerifyKey is a published public key, unpadded base64.
type VerifyKey struct {
	Key string `json:"key"`
}

// OldVerifyKey is a retired public key with the time it expired.
type OldVerifyKey struct {
	Key       string `json:"key"`
	ExpiredTS int64  `json:"expired_ts"`
}

// ServerKeys fetches the server's own key document (unauthenticated); the caller verifies it.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixkeyv2server
func (f *FederationClient) ServerKeys(ctx context.Context) (*ServerKeys, error) {
	const p = "/_matrix/key/v2/server"
	c := &call{endpoint: "GET " + p, method: "GET", base: f.base, path: p, auth: noAuth, idempotent: true}
	body, err := f.t.do(ctx, c)
	if err != nil {
		return nil, err
	}
	var out ServerKeys
	if err := decode(c.endpoint, body, &out); err != nil {
		return nil, err
	}
	out.Raw = body
	return &out, nil
}

// FederationVersion is the answer of the federation /version endpoint.
type FederationVersion struct {
	Server struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"server"`
}

// Version asks the server software's name and version (unauthenticated).
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1version
func (f *FederationClient) Version(ctx context.Context) (*FederationVersion, error) {
	const p = "/_matrix/federation/v1/version"
	c := &call{endpoint: "GET " + p, method: "GET", base: f.base, path: p, auth: noAuth, idempotent: true}
	var out FederationVersion
	if err := f.t.getJSON(ctx, c, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QueryProfile asks the profile of a local user over federation (field "" for every field). It is
// also the cheapest request that proves Synapse accepts a request signed as itself: an unknown
// user gets 404 only after the signature was checked.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1queryprofile
func (f *FederationClient) QueryProfile(ctx context.Context, userID, field string) (*Profile, error) {
	q := "user_id=" + escape(userID)
	if field != "" {
		q += "&field=" + escape(field)
	}
	c, body, err := f.do(ctx, "GET", "/_matrix/federation/v1/query/profile", q, nil)
	if err != nil {
		return nil, err
	}
	var out Profile
	if err := decode(c.endpoint, body, &out); err != nil {
		return nil, err
	}
	out.Raw = body
	return &out, nil
}
