package eventcache

import (
	"fmt"
	"slices"

	"github.com/transition-matrix/transition-matrix/eventcache/internal/kv"
)

// The handover records what the one server backfilling a room from the shim (Conduit) holds, so a
// /backfill can continue every branch of the DAG, not only the one its single `v` lies on:
//
//	"h" roomID 0x00 eventID   handed over: in an answer the backfiller confirmed (value 0x01)
//	"g" roomID 0x00 eventID   handover edge: a prev_event of a handed event, not handed (value 0x01)
//	"o" roomID                offered: the IDs of the last answer (present while a handover runs)
//
// A handover starts with a /backfill from a join accepted through send_join (Conduit's first) and
// lasts until the next one; without one, backfills are plain walks. An answer is confirmed, up to
// `v`, when the next /backfill names one of its events as `v` (Conduit's `v` is the oldest event
// it holds, and it takes an answer in order). Per handed event that is one key of about
// 80 bytes; the edge holds one key per open branch; the offer one list of at most 100 IDs.
const (
	prefixHanded = 'h'
	prefixEdge   = 'g'
	prefixOffer  = 'o'
)

func handedKey(room, id string) []byte { return append(roomPrefix(prefixHanded, room), id...) }
func edgeKey(room, id string) []byte   { return append(roomPrefix(prefixEdge, room), id...) }
func offerKey(room string) []byte      { return append([]byte{prefixOffer}, room...) }

// HandoverConfirm is called for a /backfill of room from v while a handover runs: if v is in the
// last offered answer, that answer up to v becomes handed over (Conduit takes an answer in order,
// so what follows v did not reach it, or was refused). It returns whether v is handed over (the
// request continues earlier answers) and the handover edge: the prev_events of handed events not
// handed yet. With no handover running it returns false.
func (c *Cache) HandoverConfirm(room, v string) (continues bool, edge []string, err error) {
	err = c.update(func(w kv.Writer) error {
		offer, err := w.Get(offerKey(room))
		if err != nil || offer == nil {
			return err
		}
		d := decoder{b: offer}
		ids := d.strs()
		if d.err != nil {
			return fmt.Errorf("handover offer of %s: %w", room, d.err)
		}
		if i := slices.Index(ids, v); i >= 0 {
			if err := handOver(w, room, ids[:i+1]); err != nil {
				return err
			}
			if err := w.Put(offerKey(room), appendStrings(nil, nil)); err != nil {
				return err
			}
		}
		h, err := w.Get(handedKey(room, v))
		if err != nil {
			return err
		}
		continues = h != nil
		prefix := roomPrefix(prefixEdge, room)
		return w.Scan(prefix, nil, func(k, _ []byte) (bool, error) {
			edge = append(edge, string(k[len(prefix):]))
			return true, nil
		})
	})
	if err != nil {
		return false, nil, err
	}
	return continues, edge, nil
}

// handOver marks ids handed over and moves the edge past them.
func handOver(w kv.Writer, room string, ids []string) error {
	for _, id := range ids {
		if err := w.Put(handedKey(room, id), []byte{1}); err != nil {
			return err
		}
		if err := w.Delete(edgeKey(room, id)); err != nil {
			return err
		}
	}
	for _, id := range ids {
		v, err := w.Get(eventKey(id))
		if err != nil {
			return err
		}
		if v == nil {
			continue
		}
		e, err := decodeEvent(id, v, false)
		if err != nil {
			return err
		}
		for _, p := range e.PrevEvents {
			if h, err := w.Get(handedKey(room, p)); err != nil {
				return err
			} else if h == nil {
				if err := w.Put(edgeKey(room, p), []byte{1}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// HandoverOffer records the IDs of the answer just given to a /backfill of room, while a handover
// runs there.
func (c *Cache) HandoverOffer(room string, ids []string) error {
	return c.update(func(w kv.Writer) error {
		if v, err := w.Get(offerKey(room)); err != nil || v == nil {
			return err
		}
		return w.Put(offerKey(room), appendStrings(nil, ids))
	})
}

// HandoverReset starts a new handover in room, forgetting the last: the backfiller starts again
// from a join.
func (c *Cache) HandoverReset(room string) error {
	return c.update(func(w kv.Writer) error {
		for _, p := range []byte{prefixHanded, prefixEdge} {
			var keys [][]byte
			err := w.Scan(roomPrefix(p, room), nil, func(k, _ []byte) (bool, error) {
				keys = append(keys, slices.Clone(k))
				return true, nil
			})
			if err != nil {
				return err
			}
			for _, k := range keys {
				if err := w.Delete(k); err != nil {
					return err
				}
			}
		}
		return w.Put(offerKey(room), appendStrings(nil, nil))
	})
}

// BackfillNotHanded is Backfill that neither returns nor walks through events handed over in
// room (see HandoverConfirm): seeds are the backfiller's `v` and the handover edge.
func (c *Cache) BackfillNotHanded(room string, seeds []string, limit int) (events []Event, missing []string, err error) {
	return c.backfill(room, seeds, limit, true)
}
