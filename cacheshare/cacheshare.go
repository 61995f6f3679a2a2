// Package cacheshare lets other shim commands read the event cache a running `shim serve` holds:
// serve answers on a Unix socket beside the cache file (mode 0600), so `shim verify` reads the
// cache, brought up to date from Synapse by serve, without a copy and without stopping serve.
package cacheshare

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/transition-matrix/transition-matrix/eventcache"
)

// Errors, for errors.Is.
var (
	// ErrNoServer: nothing answers on the cache's socket (no `shim serve` runs on this cache).
	ErrNoServer = errors.New("no shim serve answers on the event cache's socket")
	// ErrSocketPathTooLong: the socket's path is longer than the system allows.
	ErrSocketPathTooLong = errors.New("socket path too long")
	// ErrIncomplete: the answer ended before its end marker; the caller may retry.
	ErrIncomplete = errors.New("answer cut short")
	// ErrCannotRefresh: serve cannot bring a room up to date (it has no Synapse configured).
	ErrCannotRefresh = errors.New("serve cannot bring the cache up to date from Synapse")
)

// SocketPath is where serve answers for the cache at cachePath.
func SocketPath(cachePath string) string { return cachePath + ".sock" }

// maxSocketPath is the longest socket path the system takes (sun_path less its final NUL).
var maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// Server answers cache requests over the socket.
type Server struct {
	Cache *eventcache.Cache
	// Refresh brings a room up to date from Synapse, from its current forward extremities; nil
	// when serve has no Synapse (requests with heads are then refused with ErrCannotRefresh).
	Refresh func(ctx context.Context, roomID string, heads []string) error
}

// Listen binds the socket for the cache at cachePath, replacing a stale one: the caller holds the
// cache's lock, so no other serve can be using it.
func Listen(cachePath string) (net.Listener, error) {
	p := SocketPath(cachePath)
	if len(p) > maxSocketPath {
		return nil, fmt.Errorf("cacheshare: %w: %s is %d bytes, the system allows %d (a shorter cache.path fixes it)", ErrSocketPathTooLong, p, len(p), maxSocketPath)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cacheshare: removing the stale socket: %w", err)
	}
	ln, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("cacheshare: %w", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("cacheshare: %w", err)
	}
	return ln, nil
}

// Serve answers on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		srv.Close() // requests in flight follow ctx and end with it
	}()
	err := srv.Serve(ln)
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// roomEventsRequest asks for a room's events, first brought up to date from heads when given.
type roomEventsRequest struct {
	RoomID string   `json:"room_id"`
	Heads  []string `json:"heads,omitempty"`
	// JSONTypes are the event types whose full JSON is sent too (the rest: metadata only).
	JSONTypes []string `json:"json_types,omitempty"`
}

// line is one line of the answer: an event, or the final line (End, or Error).
type line struct {
	ID         string            `json:"id,omitempty"`
	Type       string            `json:"type,omitempty"`
	StateKey   *string           `json:"state_key,omitempty"`
	Depth      int64             `json:"depth,omitempty"`
	Status     eventcache.Status `json:"status,omitempty"`
	PrevEvents []string          `json:"prev_events,omitempty"`
	AuthEvents []string          `json:"auth_events,omitempty"`
	JSON       json.RawMessage   `json:"json,omitempty"`
	End        bool              `json:"end,omitempty"`
	Count      int               `json:"count,omitempty"`
	Error      string            `json:"error,omitempty"`
}

// Handler serves GET /v1/ping and POST /v1/room-events (one JSON line per event, then an end line).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") })
	mux.HandleFunc("POST /v1/room-events", s.roomEvents)
	return mux
}

func (s *Server) roomEvents(w http.ResponseWriter, r *http.Request) {
	var req roomEventsRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.RoomID == "" {
		http.Error(w, `{"error":"want {\"room_id\": ...}"}`, http.StatusBadRequest)
		return
	}
	if len(req.Heads) > 0 {
		if s.Refresh == nil {
			writeError(w, http.StatusConflict, ErrCannotRefresh.Error())
			return
		}
		if err := s.Refresh(r.Context(), req.RoomID, req.Heads); err != nil {
			writeError(w, http.StatusBadGateway, "bringing the cache up to date from Synapse: "+err.Error())
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	n := 0
	var werr error
	err := s.Cache.RoomEvents(req.RoomID, func(e eventcache.Event) bool {
		l := line{ID: e.ID, Type: e.Type, StateKey: e.StateKey, Depth: e.Depth, Status: e.Status, PrevEvents: e.PrevEvents, AuthEvents: e.AuthEvents}
		if slices.Contains(req.JSONTypes, e.Type) {
			l.JSON = e.JSON
		}
		if werr = enc.Encode(l); werr != nil {
			return false
		}
		n++
		return r.Context().Err() == nil
	})
	if werr != nil || r.Context().Err() != nil {
		return // the client is gone; it sees no end line
	}
	if err != nil {
		enc.Encode(line{Error: err.Error()})
	} else {
		enc.Encode(line{End: true, Count: n})
	}
	bw.Flush()
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(line{Error: msg})
}

// Client asks a running serve over the cache's socket.
type Client struct {
	hc   *http.Client
	path string
}

// Dial connects to the serve holding the cache at cachePath; the error wraps ErrNoServer when
// nothing answers there.
func Dial(ctx context.Context, cachePath string) (*Client, error) {
	p := SocketPath(cachePath)
	c := &Client{path: p, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p)
		}}}}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(pctx, "GET", "http://shim-serve/v1/ping", nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cacheshare: %w at %s: %v", ErrNoServer, p, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cacheshare: %w at %s: ping answered %d", ErrNoServer, p, resp.StatusCode)
	}
	return c, nil
}

// Socket is the path of the socket the client talks to.
func (c *Client) Socket() string { return c.path }

// Close releases the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// RoomEvents calls fn with each of the room's cached events (JSON filled only for jsonTypes),
// after serve brought the room up to date from heads when heads are given. An answer cut short
// is an error wrapping ErrIncomplete, never a short success.
func (c *Client) RoomEvents(ctx context.Context, roomID string, heads, jsonTypes []string, fn func(eventcache.Event) bool) error {
	body, _ := json.Marshal(roomEventsRequest{RoomID: roomID, Heads: heads, JSONTypes: jsonTypes})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://shim-serve/v1/room-events", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cacheshare: asking serve at %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	if resp.StatusCode != http.StatusOK {
		var l line
		dec.Decode(&l)
		if resp.StatusCode == http.StatusConflict {
			return fmt.Errorf("cacheshare: %w (%s)", ErrCannotRefresh, c.path)
		}
		return fmt.Errorf("cacheshare: serve answered %d: %s", resp.StatusCode, l.Error)
	}
	n := 0
	for {
		var l line
		if err := dec.Decode(&l); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("cacheshare: %w after %d events of %s: %v", ErrIncomplete, n, roomID, err)
		}
		switch {
		case l.Error != "":
			return fmt.Errorf("cacheshare: serve could not read %s: %s", roomID, l.Error)
		case l.End:
			if l.Count != n {
				return fmt.Errorf("cacheshare: %w: %d events of %s received, serve sent %d", ErrIncomplete, n, roomID, l.Count)
			}
			return nil
		}
		n++
		if !fn(eventcache.Event{ID: l.ID, RoomID: roomID, Type: l.Type, StateKey: l.StateKey, Depth: l.Depth, Status: l.Status,
			PrevEvents: l.PrevEvents, AuthEvents: l.AuthEvents, JSON: l.JSON}) {
			return nil
		}
	}
}
