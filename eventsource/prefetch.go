package eventsource

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/eventcache"
)

// prefetchTimeout bounds one background fetch of the next backfill page.
const prefetchTimeout = time.Minute

// prefetcher runs at most one background fetch per room.
type prefetcher struct {
	mu      sync.Mutex
	running map[string]bool
}

// prefetchBelow fetches, in the background, what the room's next /backfill page will lack: a
// server paging back through history asks next from the oldest event of this answer, so the
// cache walk from that event runs now and what it reaches and the cache lacks is fetched from
// Synapse, verified and stored while the requester handles this page. It takes the room's
// backfill lock, so the next request waits for it and then finds the page in the cache.
func (s *Source) prefetchBelow(roomID string, evs []eventcache.Event, limit int) {
	if s.up == nil || s.cfg.NoPrefetch || len(evs) < limit {
		return // a short answer reached the room's start (or Synapse's end): nothing below it
	}
	s.prefetch.mu.Lock()
	if s.prefetch.running[roomID] {
		s.prefetch.mu.Unlock()
		return
	}
	if s.prefetch.running == nil {
		s.prefetch.running = map[string]bool{}
	}
	s.prefetch.running[roomID] = true
	s.prefetch.mu.Unlock()
	oldest := evs[len(evs)-1].ID
	go func() {
		defer func() {
			s.prefetch.mu.Lock()
			delete(s.prefetch.running, roomID)
			s.prefetch.mu.Unlock()
		}()
		mu := s.handoverLock(roomID)
		mu.Lock()
		defer mu.Unlock()
		_, missing, err := s.cache.Backfill(roomID, []string{oldest}, limit)
		if err != nil || len(missing) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), prefetchTimeout)
		defer cancel()
		if _, err := s.fetchMissing(ctx, roomID, missing); err != nil {
			s.log.Debug("prefetching the next backfill page failed", zap.String("room_id", roomID), zap.Error(err))
		}
	}()
}
