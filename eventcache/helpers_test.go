package eventcache

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// synthJSON is a deterministic event body of about size bytes for id.
func synthJSON(id, room string, size int) []byte {
	sum := sha256.Sum256([]byte(id))
	pad := strings.Repeat(hex.EncodeToString(sum[:]), size/64+1)[:max(size-120, 0)]
	return fmt.Appendf(nil, `{"event_id":%q,"room_id":%q,"type":"m.room.message","content":{"body":%q}}`, id, room, pad)
}

// ev builds a verified synthetic event.
func ev(room, id string, depth int64, prev ...string) Event {
	return Event{
		ID: id, RoomID: room, RoomVersion: "10", Depth: depth, PrevEvents: prev,
		AuthEvents: []string{"$create"}, Type: "m.room.message", OriginServerTS: 1700000000000 + depth,
		JSON: synthJSON(id, room, 200), Status: StatusVerified,
	}
}

func openTemp(t testing.TB, opts Options) (*Cache, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "events.db")
	c, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func ids(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func mustCheck(t testing.TB, c *Cache) {
	t.Helper()
	if err := c.CheckIntegrity(); err != nil {
		t.Fatal(err)
	}
}
