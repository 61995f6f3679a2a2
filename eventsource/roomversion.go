package eventsource

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/matrixspec"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// Room-version discovery: a room's version from memory, the cache, or its m.room.create event.

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
