// Package eventsource answers the shim's federation questions from the verified event cache and,
// for what the cache lacks, from the still-running Synapse: every event fetched is verified
// (signatures of every server that must sign, content hash, event ID) before it is stored.
package eventsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/matrixspec"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// Metrics receives what the source observes; a nil Metrics in Config records nothing.
type Metrics interface {
	CacheLookup(endpoint string, hit bool)
	ObserveUpstream(endpoint, outcome string, took time.Duration)
	EventsVerified(outcome string, n int)
}

// Config holds what a Source needs; New fills the zero values with defaults.
type Config struct {
	Identity *signing.Identity // the server the shim is; its current and old keys verify its events
	Cache    *eventcache.Cache // opened with the default Options (serving every servable status)
	// Upstream is Synapse's federation API (asked as Synapse itself); nil answers from the cache alone.
	Upstream synapseclient.FederationAPI
	// Admin is Synapse's admin API, for the current state and forward extremities make_join and
	// send_join need; nil answers joins with 502.
	Admin RoomStateAPI
	// Keys gives other servers' keys (NotaryKeys asks Synapse); nil knows only Identity's keys.
	Keys    KeyFetcher
	Metrics Metrics
	Logger  *zap.Logger
	// MaxRounds caps the upstream fetch rounds one request may trigger; default 8.
	MaxRounds int
	// FetchParallel caps concurrent single-event fetches; default 8.
	FetchParallel int
}

// Source implements federation.EventSource over an event cache and Synapse.
type Source struct {
	cfg     Config
	cache   *eventcache.Cache
	up      synapseclient.FederationAPI
	checker checker
	log     *zap.Logger
	metrics Metrics

	metaMu   sync.Mutex
	versions sync.Map // room ID → room version
	memo     joinMemo // the state each recent make_join template was built on
	// handoverMu holds a *sync.Mutex per room: backfills of one room run one at a time.
	handoverMu sync.Map
}

// New checks cfg and builds a Source.
func New(cfg Config) (*Source, error) {
	if cfg.Identity == nil {
		return nil, errors.New("eventsource: Config.Identity is required")
	}
	if cfg.Cache == nil {
		return nil, errors.New("eventsource: Config.Cache is required")
	}
	if cfg.MaxRounds <= 0 {
		cfg.MaxRounds = 8
	}
	if cfg.FetchParallel <= 0 {
		cfg.FetchParallel = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Source{cfg: cfg, cache: cfg.Cache, up: cfg.Upstream, log: cfg.Logger, metrics: cfg.Metrics,
		checker: checker{keys: newWithIdentity(cfg.Identity, cfg.Keys)}}
	if s.metrics == nil {
		s.metrics = noMetrics{}
	}
	return s, nil
}

type noMetrics struct{}

func (noMetrics) CacheLookup(string, bool)                      {}
func (noMetrics) ObserveUpstream(string, string, time.Duration) {}
func (noMetrics) EventsVerified(string, int)                    {}

// Event returns one servable event from the cache, or fetches and verifies it upstream.
func (s *Source) Event(ctx context.Context, eventID string) (json.RawMessage, error) {
	ev, err := s.cache.Get(eventID)
	if err == nil {
		s.metrics.CacheLookup("event", true)
		return ev.JSON, nil
	}
	if !errors.Is(err, eventcache.ErrNotFound) {
		return nil, err
	}
	if j, ok, err := s.joinEvent("", eventID); err != nil {
		return nil, err
	} else if ok {
		s.metrics.CacheLookup("event", true)
		return j.JSON, nil
	}
	s.metrics.CacheLookup("event", false)
	ev, err = s.fetchEvent(ctx, "", eventID)
	if errors.Is(err, errWrongEvent) {
		return nil, fmt.Errorf("%w: %v", matrixspec.ErrNotVerified, err)
	}
	if err != nil {
		return nil, err
	}
	if !ev.Status.Servable() {
		return nil, fmt.Errorf("%w: %s", matrixspec.ErrNotVerified, eventID)
	}
	return ev.JSON, nil
}

// Backfill walks the cache newest first from seeds; whatever the walk reaches that the cache
// lacks is fetched upstream (Synapse's /backfill, then /event and /get_missing_events for what it
// omits) and the walk is repeated, so the answer is in the right order. A seed that is a join
// accepted through send_join is replaced by its prev_events (the join itself is not answered).
//
// Conduit asks from one `v`, the oldest event it holds, so on a DAG with parallel branches it
// would follow one branch only. The cache therefore keeps what Conduit was handed (eventcache's
// handover): a request from a join starts it afresh; a request from a handed event continues it,
// walking from v and from the unhanded prev_events of every handed event, without the handed
// events. Other requests are answered as a plain walk.
func (s *Source) Backfill(ctx context.Context, roomID string, seeds []string, limit int) ([]json.RawMessage, error) {
	mu := s.handoverLock(roomID)
	mu.Lock()
	defer mu.Unlock()
	fromJoin := false
	for _, id := range seeds {
		if _, ok, err := s.joinEvent(roomID, id); err != nil {
			return nil, err
		} else if ok {
			fromJoin = true
		}
	}
	walkSeeds, err := s.seedsPastJoins(roomID, seeds)
	if err != nil {
		return nil, err
	}
	continues := false
	switch {
	case fromJoin:
		if err := s.cache.HandoverReset(roomID); err != nil {
			s.log.Warn("could not reset the backfill handover", zap.String("room_id", roomID), zap.Error(err))
		}
	case len(seeds) == 1:
		var edge []string
		continues, edge, err = s.cache.HandoverConfirm(roomID, seeds[0])
		if err != nil {
			s.log.Warn("could not read the backfill handover; answering a plain walk", zap.String("room_id", roomID), zap.Error(err))
			continues = false
		}
		if continues {
			walkSeeds = append(walkSeeds, edge...)
		}
	}
	evs, err := s.walkEvents(ctx, "backfill", roomID, limit, seeds, func() ([]eventcache.Event, []string, error) {
		if continues {
			return s.cache.BackfillNotHanded(roomID, walkSeeds, limit)
		}
		return s.cache.Backfill(roomID, walkSeeds, limit)
	})
	if err != nil {
		return nil, err
	}
	if err := s.cache.HandoverOffer(roomID, idsOf(evs)); err != nil {
		s.log.Warn("could not record the backfill answer", zap.String("room_id", roomID), zap.Error(err))
	}
	return jsonOf(evs), nil
}

// handoverLock serialises the backfills of one room, so each reads the handover the last one left.
func (s *Source) handoverLock(roomID string) *sync.Mutex {
	mu, _ := s.handoverMu.LoadOrStore(roomID, &sync.Mutex{})
	return mu.(*sync.Mutex)
}

// MissingEvents answers get_missing_events from the cache, fetching what it lacks upstream.
func (s *Source) MissingEvents(ctx context.Context, roomID string, earliest, latest []string, limit int, minDepth int64) ([]json.RawMessage, error) {
	evs, err := s.walkEvents(ctx, "get_missing_events", roomID, limit, latest, func() ([]eventcache.Event, []string, error) {
		return s.cache.MissingEvents(roomID, earliest, latest, limit, minDepth)
	})
	if err != nil {
		return nil, err
	}
	return jsonOf(evs), nil
}

// walkEvents runs a cache walk, fetches the events it reports missing, and walks again, until
// nothing is missing that Synapse was not asked for, or Synapse cannot be asked (down, failing,
// not configured, or MaxRounds reached). The answer is then complete when nothing it misses is
// unknown — every gap is one Synapse said it lacks, or an event stored failing verification —
// or when it holds limit events. Otherwise it is an error wrapping matrixspec.ErrIncomplete:
// a short answer would look to the requester like the beginning of the room. seeds (the walk's
// starting events) of another room answer matrixspec.ErrNotFound.
func (s *Source) walkEvents(ctx context.Context, endpoint, roomID string, limit int, seeds []string, run func() ([]eventcache.Event, []string, error)) ([]eventcache.Event, error) {
	if err := s.checkSeedRooms(roomID, seeds); err != nil {
		return nil, err
	}
	tried := map[string]bool{} // asked for in a round Synapse answered: what is still missing, it lacks
	var upErr error
	for round := 0; ; round++ {
		evs, missing, err := run()
		if err != nil {
			return nil, err
		}
		if round == 0 {
			s.metrics.CacheLookup(endpoint, len(missing) == 0)
		}
		pending := slices.DeleteFunc(slices.Clone(missing), func(id string) bool { return tried[id] })
		if len(pending) == 0 {
			s.recordLacking(roomID, missing)
			return evs, nil
		}
		if s.up == nil || upErr != nil || round >= s.cfg.MaxRounds {
			unknown, err := s.unknownGaps(roomID, pending)
			if err != nil {
				return nil, err
			}
			if len(unknown) == 0 || len(evs) >= limit {
				return evs, nil
			}
			if len(evs) == 0 && upErr != nil {
				return nil, upErr // nothing to serve: Synapse's answer (403, 404, 502, 504) stands
			}
			cause := upErr
			switch {
			case s.up == nil:
				cause = errors.New("no Synapse is configured")
			case cause == nil:
				cause = fmt.Errorf("still missing after %d rounds of fetching from Synapse", round)
			}
			s.log.Warn("answer incomplete: refusing it rather than serving a short one", zap.String("endpoint", endpoint),
				zap.String("room_id", roomID), zap.Int("events", len(evs)), zap.Int("limit", limit), zap.Int("missing", len(unknown)), zap.Error(cause))
			return nil, fmt.Errorf("%w: %d of up to %d events, %d missing events (first %s) not fetched: %w",
				matrixspec.ErrIncomplete, len(evs), limit, len(unknown), unknown[0], cause)
		}
		wrongRoom, err := s.fetchMissing(ctx, roomID, pending)
		if err != nil {
			upErr = err
			s.log.Warn("fetching from Synapse failed", zap.String("endpoint", endpoint), zap.String("room_id", roomID), zap.Error(err))
			continue
		}
		for _, id := range pending {
			tried[id] = true
		}
		for _, id := range seeds {
			if wrongRoom[id] {
				return nil, fmt.Errorf("%w: event %s is not in room %s", matrixspec.ErrNotFound, id, roomID)
			}
		}
	}
}

// checkSeedRooms refuses a walk from a cached event of another room.
func (s *Source) checkSeedRooms(roomID string, seeds []string) error {
	for _, id := range seeds {
		ev, err := s.cache.GetAnyStatus(id)
		if errors.Is(err, eventcache.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if ev.RoomID != roomID {
			return fmt.Errorf("%w: event %s is not in room %s", matrixspec.ErrNotFound, id, roomID)
		}
	}
	return nil
}

// unknownGaps returns the ids that are not known gaps of the room: neither recorded as lacking
// from Synapse (by archive or an earlier answer) nor stored with a status that is not served.
func (s *Source) unknownGaps(roomID string, ids []string) ([]string, error) {
	m, ok, err := s.cache.RoomMeta(roomID)
	if err != nil {
		return nil, err
	}
	var lacking []string
	if ok {
		p, err := decodeProgress(m)
		if err != nil {
			return nil, err
		}
		lacking = p.Missing
	}
	var out []string
	for _, id := range ids {
		if slices.Contains(lacking, id) {
			continue
		}
		if _, err := s.cache.GetAnyStatus(id); err == nil {
			continue // stored, but not served: its verdict is known
		} else if !errors.Is(err, eventcache.ErrNotFound) {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// recordLacking notes events Synapse was asked for and did not give as lacking in the room's
// record, so an answer that reaches them with Synapse down is known to be as whole as it gets.
func (s *Source) recordLacking(roomID string, missing []string) {
	if len(missing) == 0 {
		return
	}
	lacking, err := s.unknownGaps(roomID, missing) // only what is not recorded yet: no write per request
	if err != nil || len(lacking) == 0 {
		return
	}
	if _, err := s.commit(roomID, nil, lacking, false); err != nil {
		s.log.Warn("could not record events Synapse lacks", zap.String("room_id", roomID), zap.Error(err))
	}
}

// fetchMissing fetches events of roomID upstream: /backfill from them (which also brings their
// ancestors), /event for each one it did not return, and /get_missing_events behind those when
// /backfill returned nothing (Dendrite answers its own name nothing there). It returns the IDs
// Synapse has as events of another room.
func (s *Source) fetchMissing(ctx context.Context, roomID string, ids []string) (wrongRoom map[string]bool, err error) {
	version, err := s.roomVersion(ctx, roomID, ids)
	if err != nil {
		return nil, err
	}
	seeds := ids[:min(len(ids), 20)]
	start := time.Now()
	tx, err := s.up.Backfill(ctx, roomID, seeds, matrixspec.MaxBackfill)
	s.observe("backfill", start, err)
	got := map[string]bool{}
	backfilled := 0
	if err != nil {
		if !errors.Is(err, synapseclient.ErrNotFound) {
			return nil, upstreamError(err)
		}
	} else {
		stored, err := s.store(ctx, roomID, version, tx.PDUs)
		if err != nil {
			return nil, err
		}
		backfilled = len(stored)
		for _, id := range stored {
			got[id] = true
		}
	}
	var rest []string
	for _, id := range ids {
		if !got[id] {
			rest = append(rest, id)
		}
	}
	fetched, wrongRoom, err := s.fetchEach(ctx, roomID, rest)
	if err != nil {
		return nil, err
	}
	if backfilled == 0 && len(fetched) > 0 {
		start := time.Now()
		pdus, err := s.up.GetMissingEvents(ctx, roomID, synapseclient.MissingEventsRequest{LatestEvents: fetched, Limit: matrixspec.MaxBackfill})
		s.observe("get_missing_events", start, err)
		if err != nil {
			if errors.Is(err, synapseclient.ErrNotFound) {
				return wrongRoom, nil
			}
			return nil, upstreamError(err)
		}
		if _, err := s.store(ctx, roomID, version, pdus); err != nil {
			return nil, err
		}
	}
	return wrongRoom, nil
}

// fetchEach fetches events one by one with /event, a few at a time; it returns the IDs stored
// and those Synapse has in another room. Events Synapse does not have are skipped.
func (s *Source) fetchEach(ctx context.Context, roomID string, ids []string) ([]string, map[string]bool, error) {
	var (
		mu        sync.Mutex
		stored    []string
		wrongRoom = map[string]bool{}
		first     error
		wg        sync.WaitGroup
		sem       = make(chan struct{}, s.cfg.FetchParallel)
	)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := s.fetchEvent(ctx, roomID, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				stored = append(stored, id)
			case errors.Is(err, errOtherRoom):
				wrongRoom[id] = true
			case errors.Is(err, matrixspec.ErrNotFound) || errors.Is(err, errWrongEvent):
				s.log.Warn("event not available from Synapse", zap.String("room_id", roomID), zap.String("event_id", id), zap.Error(err))
			case first == nil:
				first = err
			}
		}()
	}
	wg.Wait()
	slices.Sort(stored)
	return stored, wrongRoom, first
}

// fetchEvent fetches one event with /event, verifies and stores it; roomID, when set, must match.
func (s *Source) fetchEvent(ctx context.Context, roomID, eventID string) (eventcache.Event, error) {
	if s.up == nil {
		return eventcache.Event{}, fmt.Errorf("%w: event %s is not in the cache and no Synapse is configured", matrixspec.ErrNotFound, eventID)
	}
	start := time.Now()
	tx, err := s.up.Event(ctx, eventID)
	s.observe("event", start, err)
	if err != nil {
		return eventcache.Event{}, upstreamError(err)
	}
	room := tx.PDUs[0].RoomID
	if roomID != "" && room != roomID {
		return eventcache.Event{}, fmt.Errorf("%w: %w: %s is in room %q, not %q", errWrongEvent, errOtherRoom, eventID, room, roomID)
	}
	version, err := s.roomVersionFrom(ctx, room, tx.PDUs[0])
	if err != nil {
		return eventcache.Event{}, err
	}
	evs, err := s.checkAll(ctx, room, version, []synapseclient.PDU{tx.PDUs[0]})
	if err != nil {
		return eventcache.Event{}, err
	}
	if len(evs) != 1 || evs[0].ID != eventID {
		return eventcache.Event{}, fmt.Errorf("%w: asked Synapse for %s", errWrongEvent, eventID)
	}
	if _, err := s.commit(room, evs, nil, false); err != nil {
		return eventcache.Event{}, err
	}
	return evs[0], nil
}

// store verifies PDUs of one room and stores them; it returns the IDs stored (any status).
func (s *Source) store(ctx context.Context, roomID, version string, pdus []synapseclient.PDU) ([]string, error) {
	evs, err := s.checkAll(ctx, roomID, version, pdus)
	if err != nil {
		return nil, err
	}
	if _, err := s.commit(roomID, evs, nil, false); err != nil {
		return nil, err
	}
	ids := make([]string, len(evs))
	for i := range evs {
		ids[i] = evs[i].ID
	}
	return ids, nil
}

// EventAuth returns the auth chain of eventID from the cache, fetching the links it lacks.
func (s *Source) EventAuth(ctx context.Context, roomID, eventID string) ([]json.RawMessage, error) {
	if j, ok, err := s.joinEvent(roomID, eventID); err != nil {
		return nil, err
	} else if ok {
		return s.authChain(ctx, roomID, j.AuthEvents)
	}
	start, err := s.cachedOrFetched(ctx, roomID, eventID)
	if err != nil {
		return nil, err
	}
	return s.authChain(ctx, roomID, start.AuthEvents)
}

// authChain returns the events reachable through auth_events from ids, ids included.
func (s *Source) authChain(ctx context.Context, roomID string, ids []string) ([]json.RawMessage, error) {
	evs, err := s.authChainEvents(ctx, roomID, ids)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(evs))
	for i := range evs {
		out[i] = evs[i].JSON
	}
	return out, nil
}

// authChainEvents is authChain with the events' IDs and edges.
func (s *Source) authChainEvents(ctx context.Context, roomID string, ids []string) ([]eventcache.Event, error) {
	seen := map[string]bool{}
	queue := slices.Clone(ids)
	var out []eventcache.Event
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		if seen[id] {
			continue
		}
		seen[id] = true
		ev, err := s.cachedOrFetched(ctx, roomID, id)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
		queue = append(queue, ev.AuthEvents...)
	}
	return out, nil
}

func (s *Source) cachedOrFetched(ctx context.Context, roomID, id string) (eventcache.Event, error) {
	ev, err := s.cache.Get(id)
	if err == nil {
		if ev.RoomID != roomID {
			return eventcache.Event{}, fmt.Errorf("%w: %s is not in %s", matrixspec.ErrNotFound, id, roomID)
		}
		return ev, nil
	}
	if !errors.Is(err, eventcache.ErrNotFound) {
		return eventcache.Event{}, err
	}
	ev, err = s.fetchEvent(ctx, roomID, id)
	if errors.Is(err, errWrongEvent) {
		return eventcache.Event{}, fmt.Errorf("%w: %v", matrixspec.ErrNotFound, err)
	}
	if err != nil {
		return eventcache.Event{}, err
	}
	if !ev.Status.Servable() {
		return eventcache.Event{}, fmt.Errorf("%w: %s", matrixspec.ErrNotVerified, id)
	}
	return ev, nil
}

// StateIDs answers the state before eventID from a snapshot kept in the cache (every answer is
// kept: the state before an event never changes), otherwise asks Synapse, whose state
// resolution it needs.
func (s *Source) StateIDs(ctx context.Context, roomID, eventID string) ([]string, []string, error) {
	if err := s.checkSeedRooms(roomID, []string{eventID}); err != nil {
		return nil, nil, err
	}
	if snap, ok, err := s.snapshot(roomID, eventID); err != nil {
		return nil, nil, err
	} else if ok {
		s.metrics.CacheLookup("state_ids", true)
		return snap.State, snap.AuthChain, nil
	}
	s.metrics.CacheLookup("state_ids", false)
	if s.up == nil {
		return nil, nil, fmt.Errorf("%w: the cache holds no state at %s and no Synapse is configured", matrixspec.ErrUpstreamUnavailable, eventID)
	}
	start := time.Now()
	r, err := s.up.StateIDs(ctx, roomID, eventID)
	s.observe("state_ids", start, err)
	if err != nil {
		return nil, nil, upstreamError(err)
	}
	s.keepSnapshot(roomID, eventID, r.PDUIDs, r.AuthChainIDs)
	return r.PDUIDs, r.AuthChainIDs, nil
}

// State answers the state before eventID and its auth chain from a kept snapshot when the cache
// holds all its events, otherwise asks Synapse and serves each event verified, as stored.
func (s *Source) State(ctx context.Context, roomID, eventID string) ([]json.RawMessage, []json.RawMessage, error) {
	if err := s.checkSeedRooms(roomID, []string{eventID}); err != nil {
		return nil, nil, err
	}
	if snap, ok, err := s.snapshot(roomID, eventID); err != nil {
		return nil, nil, err
	} else if ok {
		state, missState, err := s.cache.GetMany(snap.State)
		if err != nil {
			return nil, nil, err
		}
		chain, missChain, err := s.cache.GetMany(snap.AuthChain)
		if err != nil {
			return nil, nil, err
		}
		if len(missState)+len(missChain) == 0 {
			s.metrics.CacheLookup("state", true)
			return jsonOf(state), jsonOf(chain), nil
		}
	}
	s.metrics.CacheLookup("state", false)
	if s.up == nil {
		return nil, nil, fmt.Errorf("%w: the cache holds no state at %s and no Synapse is configured", matrixspec.ErrUpstreamUnavailable, eventID)
	}
	version, err := s.roomVersion(ctx, roomID, []string{eventID})
	if err != nil {
		return nil, nil, err
	}
	start := time.Now()
	r, err := s.up.State(ctx, roomID, eventID)
	s.observe("state", start, err)
	if err != nil {
		return nil, nil, upstreamError(err)
	}
	state, err := s.storeAndServe(ctx, roomID, version, r.PDUs)
	if err != nil {
		return nil, nil, err
	}
	chain, err := s.storeAndServe(ctx, roomID, version, r.AuthChain)
	if err != nil {
		return nil, nil, err
	}
	s.keepSnapshot(roomID, eventID, idsOf(state), idsOf(chain))
	return jsonOf(state), jsonOf(chain), nil
}

// snapshot returns the kept state before eventID, if it is of roomID.
func (s *Source) snapshot(roomID, eventID string) (eventcache.StateSnapshot, bool, error) {
	snap, ok, err := s.cache.StateAt(eventID)
	if err != nil || !ok || snap.RoomID != roomID {
		return eventcache.StateSnapshot{}, false, err
	}
	return snap, true, nil
}

// keepSnapshot stores the state before eventID as Synapse answered it; a failure only logs.
func (s *Source) keepSnapshot(roomID, eventID string, state, chain []string) {
	err := s.cache.Apply(eventcache.Batch{StateSnapshots: []eventcache.StateSnapshot{{EventID: eventID, RoomID: roomID, State: state, AuthChain: chain}}})
	if err != nil {
		s.log.Warn("could not keep the state at an event", zap.String("room_id", roomID), zap.String("event_id", eventID), zap.Error(err))
	}
}

func jsonOf(evs []eventcache.Event) []json.RawMessage {
	out := make([]json.RawMessage, len(evs))
	for i := range evs {
		out[i] = evs[i].JSON
	}
	return out
}

func idsOf(evs []eventcache.Event) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evs[i].ID
	}
	return out
}

// storeAndServe verifies and stores pdus and returns them as the cache serves them; any that
// fails verification fails the whole answer.
func (s *Source) storeAndServe(ctx context.Context, roomID, version string, pdus []synapseclient.PDU) ([]eventcache.Event, error) {
	ids, err := s.store(ctx, roomID, version, pdus)
	if err != nil {
		return nil, err
	}
	found, missing, err := s.cache.GetMany(ids)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 || len(ids) != len(pdus) {
		return nil, fmt.Errorf("%w: %d state events", matrixspec.ErrNotVerified, len(pdus)-len(found))
	}
	return found, nil
}

// roomVersion returns a room's version from memory, the cache, or Synapse (through the
// m.room.create event in the auth events of one of known).
func (s *Source) roomVersion(ctx context.Context, roomID string, known []string) (string, error) {
	if v, ok := s.knownVersion(roomID); ok {
		return v, nil
	}
	if s.up == nil {
		return "", fmt.Errorf("%w: room %s is not in the cache", matrixspec.ErrNotFound, roomID)
	}
	var lastErr error = fmt.Errorf("%w: no event of room %s to start from", matrixspec.ErrNotFound, roomID)
	for _, id := range known {
		start := time.Now()
		tx, err := s.up.Event(ctx, id)
		s.observe("event", start, err)
		if err != nil {
			lastErr = upstreamError(err)
			if errors.Is(err, synapseclient.ErrNotFound) {
				continue
			}
			return "", lastErr
		}
		if tx.PDUs[0].RoomID != roomID {
			continue
		}
		return s.roomVersionFrom(ctx, roomID, tx.PDUs[0])
	}
	return "", lastErr
}

func (s *Source) knownVersion(roomID string) (string, bool) {
	if v, ok := s.versions.Load(roomID); ok {
		return v.(string), true
	}
	m, ok, err := s.cache.RoomMeta(roomID)
	if err == nil && ok && m.RoomVersion != "" {
		s.versions.Store(roomID, m.RoomVersion)
		return m.RoomVersion, true
	}
	return "", false
}

// roomVersionFrom finds the room's version starting from one of its events: the event itself
// when it is the m.room.create, otherwise the create event among its auth events.
func (s *Source) roomVersionFrom(ctx context.Context, roomID string, p synapseclient.PDU) (string, error) {
	if v, ok := s.knownVersion(roomID); ok {
		return v, nil
	}
	create := p
	if p.Type != "m.room.create" {
		found := false
		for _, id := range p.AuthEvents {
			start := time.Now()
			tx, err := s.up.Event(ctx, id)
			s.observe("event", start, err)
			if err != nil {
				if errors.Is(err, synapseclient.ErrNotFound) {
					continue
				}
				return "", upstreamError(err)
			}
			if tx.PDUs[0].Type == "m.room.create" && tx.PDUs[0].RoomID == roomID {
				create, found = tx.PDUs[0], true
				break
			}
		}
		if !found {
			return "", fmt.Errorf("%w: the m.room.create event of %s is not among the auth events of an event of it", matrixspec.ErrNotFound, roomID)
		}
	}
	version := "1"
	if v := gjson.GetBytes(create.Raw, "content.room_version"); v.Exists() {
		version = v.String()
	}
	if err := s.rememberVersion(roomID, version); err != nil {
		return "", err
	}
	if _, err := s.store(ctx, roomID, version, []synapseclient.PDU{create}); err != nil {
		return "", err
	}
	return version, nil
}

// rememberVersion records a room's version in its cache meta, keeping the rest of the meta.
func (s *Source) rememberVersion(roomID, version string) error {
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	m, ok, err := s.cache.RoomMeta(roomID)
	if err != nil {
		return err
	}
	if ok && m.RoomVersion != "" {
		if m.RoomVersion != version {
			return fmt.Errorf("room %s: the cache says room version %q, Synapse %q", roomID, m.RoomVersion, version)
		}
	} else {
		m.RoomID, m.RoomVersion = roomID, version
		if err := s.cache.SetRoomMeta(m); err != nil {
			return err
		}
	}
	s.versions.Store(roomID, version)
	return nil
}

func (s *Source) observe(endpoint string, start time.Time, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, synapseclient.ErrNotFound):
		outcome = "not_found"
	case errors.Is(err, context.DeadlineExceeded):
		outcome = "timeout"
	default:
		outcome = "error"
	}
	s.metrics.ObserveUpstream(endpoint, outcome, time.Since(start))
}

// upstreamError maps a synapseclient error to matrixspec's errors, keeping the cause.
// A client error of Synapse's (400, a 403 other than "host not in room") is passed on as it is:
// the request was at fault, not Synapse.
func upstreamError(err error) error {
	var se *synapseclient.Error
	if errors.As(err, &se) && (se.Status == 400 || se.Status == 403 && !errors.Is(se, synapseclient.ErrHostNotInRoom)) {
		code := se.ErrCode
		if code == "" {
			code = "M_UNKNOWN"
		}
		msg := se.Message
		if msg == "" {
			msg = http.StatusText(se.Status)
		}
		return fmt.Errorf("%w: %v", matrixspec.New(se.Status, code, msg), err)
	}
	switch {
	case errors.Is(err, synapseclient.ErrNotFound):
		return fmt.Errorf("%w: %v", matrixspec.ErrNotFound, err)
	case errors.Is(err, synapseclient.ErrHostNotInRoom):
		return fmt.Errorf("%w: %v", matrixspec.ErrHostNotInRoom, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return err
	default:
		return fmt.Errorf("%w: %v", matrixspec.ErrUpstreamUnavailable, err)
	}
}
