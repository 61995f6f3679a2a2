package cutover

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestOneRetryPolicy: 429 and 5xx are retried, each retry is told
// to OnRetry, a 4xx is not retried, and the last error names the endpoint and errcode.
func TestOneRetryPolicy(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch r.URL.Path {
		case "/_matrix/client/v3/joined_rooms":
			switch n {
			case 1:
				w.WriteHeader(429)
				w.Write([]byte(`{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":10}`))
			case 2:
				w.WriteHeader(503)
				w.Write([]byte(`upstream down`))
			default:
				w.Write([]byte(`{"joined_rooms":["!r:example.org"]}`))
			}
		case "/_matrix/client/v3/login":
			w.WriteHeader(404) // no appservice login: reads masquerade
		case "/_matrix/client/v3/join/!r:example.org":
			w.WriteHeader(403)
			w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"not invited"}`))
		default:
			w.WriteHeader(502)
			w.Write([]byte(`{"errcode":"M_UNKNOWN","error":"no server"}`))
		}
	}))
	defer srv.Close()
	var retried []string
	c := &Client{BaseURL: srv.URL, Token: "as-token", Attempts: 3,
		OnRetry: func(endpoint string, attempt int, err error) { retried = append(retried, endpoint) }}
	ctx := context.Background()
	rooms, err := c.JoinedRooms(ctx, alice)
	if err != nil || len(rooms) != 1 || calls.Load() != 3 || len(retried) != 2 {
		t.Fatalf("joined rooms %v %v after %d calls, %d retries told", rooms, err, calls.Load(), len(retried))
	}
	calls.Store(0)
	err = c.Join(ctx, alice, "!r:example.org", "example.org")
	if !errors.Is(err, ErrForbidden) || calls.Load() != 1 {
		t.Fatalf("a 403 join: %v after %d calls, want one call and ErrForbidden", err, calls.Load())
	}
	calls.Store(0)
	_, err = c.Messages(ctx, "!x:example.org", alice, "", 10)
	var te *TargetError
	if !errors.As(err, &te) || te.Status != 502 || calls.Load() < 3 ||
		err.Error() != "target: GET /rooms/{roomId}/messages: 502 M_UNKNOWN: no server" {
		t.Fatalf("a 502 every time: %v after %d calls", err, calls.Load())
	}
}
