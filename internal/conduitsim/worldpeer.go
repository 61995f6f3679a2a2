package conduitsim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/transition-matrix/transition-matrix/federation"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/matrixspec"
	"github.com/transition-matrix/transition-matrix/signing"
)

// WorldPeer is a federation peer for tests that do not run the shim: make_join and send_join
// answered from a world (template on the forward extremities, state = the current state, its auth
// chain), /backfill and /event by the real federation server over the world's events (pruned when
// redacted, as Synapse serves them). A join's ID seeding /backfill expands to its prev_events, as in
// the shim. It checks no X-Matrix signature on make_join and send_join.
type WorldPeer struct {
	w   *world.World
	fed http.Handler

	mu      sync.Mutex
	joins   map[string][]string // join event ID -> prev_events
	corrupt map[string]bool     // events whose signatures send_join breaks
	event   json.RawMessage     // when set, send_join answers it as "event"
}

// NewWorldPeer builds a peer over a world, answering requests signed by id.
func NewWorldPeer(w *world.World, id *signing.Identity) (*WorldPeer, error) {
	f := &WorldPeer{w: w, joins: map[string][]string{}, corrupt: map[string]bool{}}
	srv, err := federation.New(federation.Config{Identity: id, Source: worldSource{f}})
	if err != nil {
		return nil, err
	}
	f.fed = srv
	return f, nil
}

// StartWorldPeer serves a WorldPeer on an httptest server closed when the test ends; it returns the URL.
func StartWorldPeer(t testing.TB, w *world.World, id *signing.Identity) (*WorldPeer, string) {
	t.Helper()
	f, err := NewWorldPeer(w, id)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(f)
	t.Cleanup(hs.Close)
	return f, hs.URL
}

// ServeHTTP answers a federation request.
func (f *WorldPeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(r.URL.EscapedPath(), "/")
	for i := range parts {
		parts[i], _ = url.PathUnescape(parts[i])
	}
	switch {
	case len(parts) == 7 && parts[4] == "make_join":
		f.makeJoin(w, r, parts[5], parts[6])
	case len(parts) == 7 && parts[4] == "send_join":
		f.sendJoin(w, r, parts[5])
	default:
		f.fed.ServeHTTP(w, r)
	}
}

func (f *WorldPeer) makeJoin(w http.ResponseWriter, r *http.Request, roomID, user string) {
	rm := f.w.Room(roomID)
	if rm == nil {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "no such room")
		return
	}
	if !slices.Contains(r.URL.Query()["ver"], rm.Version) {
		writeError(w, http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION", "room version "+rm.Version)
		return
	}
	st := rm.CurrentState()
	var auth []string
	for _, k := range [][2]string{{"m.room.create", ""}, {"m.room.power_levels", ""}, {"m.room.join_rules", ""}, {"m.room.member", user}} {
		if id, ok := st.Get(k[0], k[1]); ok && !(k[0] == "m.room.create" && rm.DomainlessIDs()) {
			auth = append(auth, id)
		}
	}
	var depth int64
	for _, id := range rm.ForwardExtremities() {
		depth = max(depth, rm.Event(id).Depth)
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_version": rm.Version, "event": map[string]any{
		"room_id": roomID, "type": "m.room.member", "sender": user, "state_key": user,
		"content": map[string]any{"membership": "join"}, "prev_events": rm.ForwardExtremities(),
		"auth_events": auth, "depth": depth + 1, "origin": f.w.ServerName, "origin_server_ts": 1,
	}})
}

func (f *WorldPeer) sendJoin(w http.ResponseWriter, r *http.Request, roomID string) {
	rm := f.w.Room(roomID)
	body, _ := io.ReadAll(r.Body)
	id, err := signing.EventID(rm.Version, body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", err.Error())
		return
	}
	var join struct {
		PrevEvents []string `json:"prev_events"`
	}
	_ = json.Unmarshal(body, &join)
	f.mu.Lock()
	f.joins[id] = join.PrevEvents
	extra := f.event
	f.mu.Unlock()
	ids := rm.CurrentState().EventIDs()
	ans := map[string]any{"state": f.pdus(ids), "auth_chain": f.pdus(rm.AuthChain(ids, false))}
	if extra != nil {
		ans["event"] = extra
	}
	writeJSON(w, http.StatusOK, ans)
}

func (f *WorldPeer) pdus(ids []string) []json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]json.RawMessage, 0, len(ids))
	for _, id := range ids {
		raw := f.pdu(f.w.Event(id))
		if f.corrupt[id] {
			var m map[string]any
			_ = json.Unmarshal(raw, &m)
			for _, sigs := range m["signatures"].(map[string]any) {
				for k := range sigs.(map[string]any) {
					sigs.(map[string]any)[k] = signing.EncodeBase64(make([]byte, 64))
				}
			}
			raw, _ = json.Marshal(m)
		}
		out = append(out, raw)
	}
	return out
}

// pdu is an event as Synapse serves it: pruned when redacted.
func (f *WorldPeer) pdu(e *world.Event) json.RawMessage {
	if e.Redacted && e.RedactedJSON != nil {
		return e.RedactedJSON
	}
	return e.JSON
}

// worldSource answers /backfill and /event from the world; the methods Conduit never calls are nil.
type worldSource struct{ f *WorldPeer }

var _ federation.EventSource = worldSource{}

func (s worldSource) Event(_ context.Context, id string) (federation.PDU, error) {
	e := s.f.w.Event(id)
	if e == nil {
		return nil, matrixspec.ErrNotFound
	}
	return s.f.pdu(e), nil
}

// Backfill walks prev_events breadth-first from the seeds (a join expands to its prev_events) and
// answers newest first.
func (s worldSource) Backfill(_ context.Context, roomID string, seeds []string, limit int) ([]federation.PDU, error) {
	r := s.f.w.Room(roomID)
	if r == nil {
		return nil, matrixspec.ErrNotFound
	}
	seen := map[string]bool{}
	var found []*world.Event
	var queue []string
	s.f.mu.Lock()
	for _, id := range seeds {
		if prev, ok := s.f.joins[id]; ok {
			queue = append(queue, prev...)
		} else {
			queue = append(queue, id)
		}
	}
	s.f.mu.Unlock()
	for len(queue) > 0 && len(found) < limit {
		id := queue[0]
		queue = queue[1:]
		if seen[id] {
			continue
		}
		seen[id] = true
		e := r.Event(id)
		if e == nil {
			continue
		}
		found = append(found, e)
		queue = append(queue, e.PrevEvents...)
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].Depth > found[j].Depth })
	out := make([]federation.PDU, len(found))
	for i, e := range found {
		out[i] = s.f.pdu(e)
	}
	return out, nil
}

func (worldSource) MissingEvents(context.Context, string, []string, []string, int, int64) ([]federation.PDU, error) {
	return nil, matrixspec.ErrNotFound
}

func (worldSource) StateIDs(context.Context, string, string) ([]string, []string, error) {
	return nil, nil, matrixspec.ErrNotFound
}

func (worldSource) State(context.Context, string, string) ([]federation.PDU, []federation.PDU, error) {
	return nil, nil, matrixspec.ErrNotFound
}

func (worldSource) EventAuth(context.Context, string, string) ([]federation.PDU, error) {
	return nil, matrixspec.ErrNotFound
}
