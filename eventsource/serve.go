package eventsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/matrixspec"
)

// Serving: the answers to /event, /backfill, /get_missing_events and /event_auth, from the cache
// first and through the pipeline (pipeline.go) for what it lacks.

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
	s.prefetchBelow(roomID, evs, limit)
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
