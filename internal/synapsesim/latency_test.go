package synapsesim

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// TestLatencyDelaysEveryAnswer: with an hour's latency no answer comes within the client's
// deadline (and the waiting handler ends with the request); without it the same request answers.
func TestLatencyDelaysEveryAnswer(t *testing.T) {
	w := sharedWorld(t)
	get := func(s *Server) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", s.URL+"/_matrix/client/versions", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(Start(t, Options{World: w})); err != nil {
		t.Fatalf("without latency: %v", err)
	}
	if err := get(Start(t, Options{World: w, Latency: time.Hour})); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with an hour's latency: %v, want the client's deadline", err)
	}
}
