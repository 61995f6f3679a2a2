package eventsource

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/matrixspec"
)

// State snapshots: the answers to /state and /state_ids, kept in the cache once computed.

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
