package eventsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"
	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/matrixspec"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// frontierBatch is how many frontier events one crawl step asks /backfill for.
const frontierBatch = 20

// RoomHeads names a room to archive and where its crawl starts (its forward extremities).
type RoomHeads struct {
	RoomID string
	Heads  []string
	// Version is the room version Synapse's admin API lists; "" has the crawl find it from the
	// room's events (a request per event until m.room.create). The m.room.create the crawl
	// reaches must say the same.
	Version string
}

// RoomSummary is the outcome of archiving one room.
type RoomSummary struct {
	RoomID      string
	RoomVersion string
	Events      int64    // stored, any status
	Verified    int64    // intact, signatures and content hash checked
	Redacted    int64    // served redacted by Synapse; signatures checked
	Pruned      int64    // content did not match its hash: stored redacted
	Rejected    int64    // signature failed: kept out of every answer
	Missing     []string // referenced but Synapse does not have them
	Complete    bool     // the crawl reached the end of every branch
	Err         error
}

// Failed counts the events that are not served intact.
func (r RoomSummary) Failed() int64 { return r.Pruned + r.Rejected }

// progressState is what RoomMeta.Progress holds for a room being archived.
type progressState struct {
	Missing []string `json:"missing,omitempty"`
}

// Archive crawls rooms, parallel at a time, and returns a summary per room in the order given.
// onEvents, when set, is told how many events each step stored (from several goroutines).
func (s *Source) Archive(ctx context.Context, rooms []RoomHeads, parallel int, onEvents func(roomID string, n int)) []RoomSummary {
	if parallel <= 0 {
		parallel = 4
	}
	out := make([]RoomSummary, len(rooms))
	var g errgroup.Group
	g.SetLimit(parallel)
	for i, r := range rooms {
		g.Go(func() error {
			out[i] = s.archiveSummary(ctx, r, onEvents)
			return nil
		})
	}
	_ = g.Wait() // a room's failure is in its summary
	return out
}

// ArchiveRoom crawls one room from heads back along prev_events and auth_events to
// m.room.create, storing every event verified. The crawl frontier is stored with each step, so
// a rerun after a crash or an interruption continues where it stopped.
func (s *Source) ArchiveRoom(ctx context.Context, roomID string, heads []string, onEvents func(string, int)) RoomSummary {
	return s.archiveSummary(ctx, RoomHeads{RoomID: roomID, Heads: heads}, onEvents)
}

func (s *Source) archiveSummary(ctx context.Context, r RoomHeads, onEvents func(string, int)) RoomSummary {
	sum := RoomSummary{RoomID: r.RoomID}
	err := s.archiveRoom(ctx, r, onEvents)
	if err != nil {
		sum.Err = err
	}
	if err := s.summarise(&sum); err != nil && sum.Err == nil {
		sum.Err = err
	}
	return sum
}

func (s *Source) archiveRoom(ctx context.Context, r RoomHeads, onEvents func(string, int)) error {
	if s.up == nil {
		return errors.New("archiving needs Synapse")
	}
	roomID, heads := r.RoomID, r.Heads
	version, err := s.archiveVersion(ctx, r)
	if err != nil {
		return fmt.Errorf("room version: %w", err)
	}
	if err := s.cache.AddFrontier(roomID, heads...); err != nil {
		return err
	}
	if err := s.recheckFailed(ctx, roomID, version); err != nil {
		return err
	}
	var last []string
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ids, err := s.cache.Frontier(roomID, "", frontierBatch)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			break
		}
		n, err := s.crawlStep(ctx, roomID, version, ids)
		if err != nil {
			return err
		}
		if n == 0 && slices.Equal(ids, last) {
			return fmt.Errorf("no progress: Synapse gives nothing new for the frontier events %v", ids)
		}
		last = ids
		if onEvents != nil && n > 0 {
			onEvents(roomID, n)
		}
	}
	return s.markComplete(roomID)
}

// archiveVersion is the room's version: the cache's, else the one Synapse lists when this code
// knows it, else found from the room's events.
func (s *Source) archiveVersion(ctx context.Context, r RoomHeads) (string, error) {
	if v, ok := s.knownVersion(r.RoomID); ok {
		return v, nil
	}
	if _, err := gmsl.GetRoomVersion(gmsl.RoomVersion(r.Version)); r.Version != "" && err == nil {
		return r.Version, s.rememberVersion(r.RoomID, r.Version)
	}
	return s.roomVersion(ctx, r.RoomID, r.Heads)
}

// checkCreateVersion fails when the room's m.room.create among evs names another room version
// than the one it was verified with.
func checkCreateVersion(roomID string, evs []eventcache.Event) error {
	for _, e := range evs {
		if e.Type != "m.room.create" || e.StateKey == nil || *e.StateKey != "" {
			continue
		}
		said := "1"
		if v := gjson.GetBytes(e.JSON, "content.room_version"); v.Exists() {
			said = v.String()
		}
		if said != e.RoomVersion {
			return fmt.Errorf("room %s: verified as room version %q, but its m.room.create says %q: remove the cache file and archive again", roomID, e.RoomVersion, said)
		}
	}
	return nil
}

// recheckFailed asks Synapse again for the room's events stored pruned or rejected, so a
// transient corruption does not stay in the cache once Synapse answers intact.
func (s *Source) recheckFailed(ctx context.Context, roomID, version string) error {
	var failed []string
	err := s.cache.RoomEvents(roomID, func(e eventcache.Event) bool {
		if e.Status == eventcache.StatusPruned || e.Status == eventcache.StatusRejected {
			failed = append(failed, e.ID)
		}
		return true
	})
	if err != nil {
		return err
	}
	var again []eventcache.Event
	for _, id := range failed {
		ev, err := s.fetchChecked(ctx, roomID, version, id)
		if err == nil {
			again = append(again, ev)
		}
	}
	_, err = s.commit(roomID, again, nil, true)
	return err
}

// crawlStep fetches the frontier events ids (and, through /backfill, their ancestors), stores
// them with their unknown prev and auth events as the new frontier, in one atomic batch.
func (s *Source) crawlStep(ctx context.Context, roomID, version string, ids []string) (int, error) {
	var pdus []synapseclient.PDU
	tx, err := s.up.Backfill(ctx, roomID, ids, matrixspec.MaxBackfill)
	if err != nil && !errors.Is(err, synapseclient.ErrNotFound) {
		return 0, fmt.Errorf("backfill: %w", upstreamError(err))
	}
	if tx != nil {
		pdus = tx.PDUs
	}
	evs, err := s.checkAll(ctx, roomID, version, pdus)
	if err != nil {
		return 0, err
	}
	// A full page from several seeds stops at the newest 100 events: deeper seeds (auth events
	// far back) come with later pages. Fetch seeds one by one only when the page was short or
	// brought nothing new, so a crawl does not ask /event for what /backfill will bring anyway.
	if len(pdus) >= matrixspec.MaxBackfill {
		n, err := s.commit(roomID, evs, nil, true)
		if err != nil || n > 0 {
			return n, err
		}
	}
	got := map[string]bool{}
	for _, e := range evs {
		got[e.ID] = true
	}
	var missing, single []string
	for _, id := range ids {
		if got[id] {
			continue
		}
		ev, err := s.fetchChecked(ctx, roomID, version, id)
		switch {
		case err == nil:
			evs = append(evs, ev)
			got[id] = true
			single = append(single, id)
		case errors.Is(err, matrixspec.ErrNotFound), errors.Is(err, errWrongEvent):
			missing = append(missing, id)
		default:
			return 0, fmt.Errorf("event %s: %w", id, err)
		}
	}
	if len(pdus) == 0 && len(single) > 0 { // /backfill gave nothing: walk with get_missing_events
		more, err := s.up.GetMissingEvents(ctx, roomID, synapseclient.MissingEventsRequest{LatestEvents: single, Limit: matrixspec.MaxBackfill})
		if err != nil && !errors.Is(err, synapseclient.ErrNotFound) {
			return 0, fmt.Errorf("get_missing_events: %w", upstreamError(err))
		}
		extra, err := s.checkAll(ctx, roomID, version, more)
		if err != nil {
			return 0, err
		}
		for _, e := range extra {
			if !got[e.ID] {
				got[e.ID] = true
				evs = append(evs, e)
			}
		}
	}
	return s.commit(roomID, evs, missing, true)
}

// decodeProgress reads a room's archive record from its meta.
func decodeProgress(m eventcache.RoomMeta) (progressState, error) {
	var p progressState
	if len(m.Progress) > 0 {
		if err := json.Unmarshal(m.Progress, &p); err != nil {
			return p, fmt.Errorf("room %s: archive progress record: %w", m.RoomID, err)
		}
	}
	return p, nil
}

// markComplete records that a room's crawl reached the end of every branch.
func (s *Source) markComplete(roomID string) error {
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	m, ok, err := s.cache.RoomMeta(roomID)
	if err != nil {
		return err
	}
	if !ok {
		m.RoomID = roomID
	}
	m.Complete = true
	return s.cache.SetRoomMeta(m)
}

// summarise fills a summary from the cache.
func (s *Source) summarise(sum *RoomSummary) error {
	m, ok, err := s.cache.RoomMeta(sum.RoomID)
	if err != nil || !ok {
		return err
	}
	sum.RoomVersion, sum.Events, sum.Complete = m.RoomVersion, m.Events, m.Complete && m.Frontier == 0
	p, err := decodeProgress(m)
	if err != nil {
		return err
	}
	sum.Missing = p.Missing
	counts, err := s.cache.StatusCounts(sum.RoomID)
	if err != nil {
		return err
	}
	sum.Verified, sum.Redacted = counts[eventcache.StatusVerified], counts[eventcache.StatusRedacted]
	sum.Pruned, sum.Rejected = counts[eventcache.StatusPruned], counts[eventcache.StatusRejected]
	return nil
}
