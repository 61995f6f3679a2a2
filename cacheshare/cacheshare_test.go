package cacheshare

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/eventcache"
)

// newCache opens a cache in a short temporary folder (socket paths are limited) holding n events
// of room, the last one a redaction.
func newCache(t *testing.T, room string, n int) (*eventcache.Cache, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "c.db")
	c, err := eventcache.Open(path, eventcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var evs []eventcache.Event
	for i := range n {
		typ := "m.room.message"
		if i == n-1 {
			typ = "m.room.redaction"
		}
		evs = append(evs, eventcache.Event{ID: fmt.Sprintf("$e%d", i), RoomID: room, RoomVersion: "10", Depth: int64(i + 1), Type: typ,
			JSON: []byte(fmt.Sprintf(`{"type":%q,"n":%d}`, typ, i)), Status: eventcache.StatusVerified})
	}
	if err := c.Put(evs...); err != nil {
		t.Fatal(err)
	}
	return c, path
}

// serveCache runs s on the cache's socket until the test ends.
func serveCache(t *testing.T, s *Server, path string) {
	t.Helper()
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func TestRoomEventsThroughServe(t *testing.T) {
	const room = "!r:hs.example"
	cache, path := newCache(t, room, 5)
	var refreshed []string
	serveCache(t, &Server{Cache: cache, Refresh: func(_ context.Context, roomID string, heads []string) error {
		refreshed = append(refreshed, roomID+" "+strings.Join(heads, ","))
		return nil
	}}, path)
	st, err := os.Stat(SocketPath(path))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v: want mode 0600", st, err)
	}
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []eventcache.Event
	if err := c.RoomEvents(context.Background(), room, []string{"$e4"}, []string{"m.room.redaction"}, func(e eventcache.Event) bool {
		got = append(got, e)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || len(refreshed) != 1 || refreshed[0] != room+" $e4" {
		t.Fatalf("got %d events, refreshed %q", len(got), refreshed)
	}
	for _, e := range got {
		if (e.Type == "m.room.redaction") != (len(e.JSON) > 0) || e.Status != eventcache.StatusVerified || e.Depth == 0 {
			t.Errorf("event %+v: want JSON for the redaction only, status and depth kept", e)
		}
	}
	// Without heads nothing is refreshed.
	if err := c.RoomEvents(context.Background(), room, nil, nil, func(eventcache.Event) bool { return true }); err != nil || len(refreshed) != 1 {
		t.Fatalf("%v, refreshed %q", err, refreshed)
	}
}

func TestCannotRefreshWithoutSynapse(t *testing.T) {
	cache, path := newCache(t, "!r:hs.example", 2)
	serveCache(t, &Server{Cache: cache}, path)
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	err = c.RoomEvents(context.Background(), "!r:hs.example", []string{"$e1"}, nil, func(eventcache.Event) bool { return true })
	if !errors.Is(err, ErrCannotRefresh) {
		t.Fatalf("got %v, want ErrCannotRefresh", err)
	}
}

// TestCutShortIsAnError: an answer without its end line is an error, never a short success.
func TestCutShortIsAnError(t *testing.T) {
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "c.db")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/ping" {
			return
		}
		fmt.Fprintln(w, `{"id":"$a","type":"m.room.message","depth":1}`)
		fmt.Fprintln(w, `{"id":"$b","type":"m.room.message","depth":2}`)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = c.RoomEvents(context.Background(), "!r:hs.example", nil, nil, func(eventcache.Event) bool { n++; return true })
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("after %d events: %v, want ErrIncomplete", n, err)
	}
}

func TestDialWithoutServeAndStaleSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "c.db")
	if _, err := Dial(context.Background(), path); !errors.Is(err, ErrNoServer) {
		t.Fatalf("no socket: %v, want ErrNoServer", err)
	}
	// A socket left by a serve that crashed: nothing answers, and the next Listen replaces it.
	stale, err := net.Listen("unix", SocketPath(path))
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	if _, err := Dial(context.Background(), path); !errors.Is(err, ErrNoServer) {
		t.Fatalf("stale socket: %v, want ErrNoServer", err)
	}
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
	long := filepath.Join(dir, strings.Repeat("x", maxSocketPath), "c.db")
	if _, err := Listen(long); !errors.Is(err, ErrSocketPathTooLong) {
		t.Fatalf("long path: %v", err)
	}
}
