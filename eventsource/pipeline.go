package eventsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/matrixspec"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// The fetch → verify → store pipeline: what serving (serve.go, state.go), joins and the archive
// lack is fetched from Synapse here, checked by the checker (verify.go), and committed to the
// cache in one batch per room.

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
		g         errgroup.Group
	)
	g.SetLimit(s.cfg.FetchParallel)
	for _, id := range ids {
		g.Go(func() error {
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
			return nil
		})
	}
	_ = g.Wait() // every fetch returns nil: errors are sorted above, the first other one kept
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

// checkAll verifies PDUs of a room; PDUs of other rooms are dropped, and events that fail their
// hash or signature are fetched once more on their own before the verdict stands.
func (s *Source) checkAll(ctx context.Context, roomID, version string, pdus []synapseclient.PDU) ([]eventcache.Event, error) {
	out := make([]eventcache.Event, 0, len(pdus))
	seen := map[string]bool{}
	for _, c := range s.checkEach(ctx, roomID, version, pdus) {
		ev, err := c.ev, c.err
		if errors.Is(err, errWrongEvent) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if seen[ev.ID] {
			continue
		}
		seen[ev.ID] = true
		switch ev.Status {
		case eventcache.StatusPruned: // the signature holds, so the ID is right: ask for the event on its own once
			if again, err := s.fetchChecked(ctx, roomID, version, ev.ID); err == nil && better(again.Status, ev.Status) {
				ev = again
			}
		case eventcache.StatusRejected: // the ID was computed from bytes that fail their signature: trust only /event
			again, err := s.fetchChecked(ctx, roomID, version, ev.ID)
			if err != nil {
				s.log.Warn("dropped an event that fails its signature", zap.String("room_id", roomID), zap.String("computed_id", ev.ID), zap.Error(err))
				continue
			}
			ev = again
		}
		out = append(out, ev)
	}
	return out, nil
}

// checked is one PDU's verdict from checkEach.
type checked struct {
	ev  eventcache.Event
	err error
}

// checkEach runs the checker on every PDU, spread over the cores; the verdicts keep the PDUs' order.
func (s *Source) checkEach(ctx context.Context, roomID, version string, pdus []synapseclient.PDU) []checked {
	out := make([]checked, len(pdus))
	workers := min(runtime.GOMAXPROCS(0), (len(pdus)+7)/8) // a few events are not worth a goroutine
	if workers <= 1 {
		for i, p := range pdus {
			out[i].ev, _, out[i].err = s.checker.check(ctx, roomID, version, p.Raw, "")
		}
		return out
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(pdus) {
					return
				}
				out[i].ev, _, out[i].err = s.checker.check(ctx, roomID, version, pdus[i].Raw, "")
			}
		})
	}
	wg.Wait()
	return out
}

// fetchChecked fetches one event with /event and verifies it, without storing it.
func (s *Source) fetchChecked(ctx context.Context, roomID, version, id string) (eventcache.Event, error) {
	tx, err := s.up.Event(ctx, id)
	if err != nil {
		return eventcache.Event{}, upstreamError(err)
	}
	ev, _, err := s.checker.check(ctx, roomID, version, tx.PDUs[0].Raw, id)
	return ev, err
}

// better reports whether status a is a better verdict than b.
func better(a, b eventcache.Status) bool { return rank(a) > rank(b) }

func rank(status eventcache.Status) int {
	switch status {
	case eventcache.StatusVerified:
		return 3
	case eventcache.StatusRedacted:
		return 2
	case eventcache.StatusPruned:
		return 1
	}
	return 0
}

// commit stores checked events of a room atomically: those not yet stored (or stored with a worse
// verdict), with frontier their unknown prev and auth events as the crawl's frontier, and the IDs
// Synapse lacks in the room's archive record.
func (s *Source) commit(roomID string, evs []eventcache.Event, missing []string, frontier bool) (int, error) {
	if err := checkCreateVersion(roomID, evs); err != nil {
		return 0, err
	}
	ids := make([]string, len(evs))
	for i := range evs {
		ids[i] = evs[i].ID
	}
	have, _, err := s.cache.GetMany(ids)
	if err != nil {
		return 0, err
	}
	old := map[string]eventcache.Status{}
	for _, h := range have {
		old[h.ID] = h.Status
	}
	var batch eventcache.Batch
	counts := map[eventcache.Status]int{}
	for _, e := range evs {
		if st, ok := old[e.ID]; ok && !better(e.Status, st) {
			continue
		}
		if e.Status == eventcache.StatusPruned || e.Status == eventcache.StatusRejected { // served redacted by Synapse is normal
			s.log.Warn("event failed verification", zap.String("event_id", e.ID), zap.String("room_id", roomID), zap.String("status", string(e.Status)))
		}
		counts[e.Status]++
		batch.Events = append(batch.Events, e)
		for _, ref := range slices.Concat(e.PrevEvents, e.AuthEvents) {
			if !frontier {
				break
			}
			batch.FrontierAdd = append(batch.FrontierAdd, eventcache.Ref{RoomID: roomID, EventID: ref})
		}
	}
	for _, id := range missing {
		batch.FrontierRemove = append(batch.FrontierRemove, eventcache.Ref{RoomID: roomID, EventID: id})
	}
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	if len(missing) > 0 {
		m, ok, err := s.cache.RoomMeta(roomID)
		if err != nil {
			return 0, err
		}
		if !ok {
			m.RoomID = roomID
		}
		p, err := decodeProgress(m)
		if err != nil {
			return 0, err
		}
		for _, id := range missing {
			if !slices.Contains(p.Missing, id) {
				p.Missing = append(p.Missing, id)
			}
		}
		slices.Sort(p.Missing)
		if m.Progress, err = json.Marshal(p); err != nil {
			return 0, err
		}
		batch.Rooms = append(batch.Rooms, m)
	}
	if len(batch.Events) == 0 && len(missing) == 0 {
		// Nothing new: the frontier IDs were stored meanwhile (e.g. by the serve path).
		return 0, nil
	}
	if err := s.cache.Apply(batch); err != nil {
		return 0, err
	}
	for st, n := range counts {
		s.metrics.EventsVerified(string(st), n)
	}
	return len(batch.Events), nil
}
