package synapsesim

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/world"
)

// BenchmarkBackfill50k measures backfill serving throughput (events/s) on a 50k-event world:
// 100-event pages from seeds spread over the busiest room, through the HTTP handler with
// X-Matrix verification.
func BenchmarkBackfill50k(b *testing.B) {
	w, err := world.Generate(world.Options{Seed: 5, TotalEvents: 50000})
	if err != nil {
		b.Fatal(err)
	}
	var room *world.Room
	for _, r := range w.Rooms {
		if r.LocalJoinedNow() && (room == nil || len(r.Events) > len(room.Events)) {
			room = r
		}
	}
	s := New(Options{World: w})
	h := s.Handler()
	reqs := make([]*http.Request, 64)
	s.URL = ""
	for i := range reqs {
		seed := room.Events[len(room.Events)-1-i*(len(room.Events)/len(reqs))]
		reqs[i] = fedRequest(b, s, "GET", "/_matrix/federation/v1/backfill/"+esc(room.ID)+"?v="+esc(seed.ID)+"&limit=100", nil)
		reqs[i].RequestURI = reqs[i].URL.RequestURI()
	}
	b.ReportAllocs()
	b.ResetTimer()
	events := 0
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, reqs[i%len(reqs)])
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
		events += bytes.Count(rec.Body.Bytes(), []byte(`"hashes":`))
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
