package synapseclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/fixtures"
	"github.com/transition-matrix/transition-matrix/signing"
)

// flaky answers the first failures requests with status and body, then the recording.
func flaky(failures int, status int, body string, header map[string]string, rec *fixtures.Recording, hits *atomic.Int32) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if int(hits.Add(1)) <= failures {
			for k, v := range header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
			return
		}
		respond(rec.Response.Status, rec.Response.Body)(w, r)
	}
}

func TestRetry429HonoursRetryAfterMs(t *testing.T) {
	f := newFake(t)
	rec := fixtures.Load(t, "admin_v2_user_alice")
	var hits atomic.Int32
	f.handle("GET", rec.Request.Path, flaky(2, 429, `{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":1234}`, nil, rec, &hits))
	var events []RetryEvent
	c, sl := newTestClient(t, f, func(cfg *Config) { cfg.OnRetry = func(e RetryEvent) { events = append(events, e) } })
	u, err := c.Admin().User(ctxT(t), "@alice:synapse.test")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "@alice:synapse.test" {
		t.Errorf("user %q", u.Name)
	}
	if got := sl.get(); len(got) != 2 || got[0] != 1234*time.Millisecond || got[1] != 1234*time.Millisecond {
		t.Errorf("sleeps = %v, want [1.234s 1.234s]", got)
	}
	if hits.Load() != 3 {
		t.Errorf("attempts = %d, want 3", hits.Load())
	}
	if len(events) != 2 || events[0].Status != 429 || events[1].Attempt != 2 || strings.Contains(events[0].Err.Error(), testAdminToken) {
		t.Errorf("retry events = %+v", events)
	}
}

func TestRetry429HonoursRetryAfterHeader(t *testing.T) {
	f := newFake(t)
	rec := fixtures.Load(t, "fed_version")
	var hits atomic.Int32
	f.handle("GET", rec.Request.Path, flaky(1, 429, `{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests"}`, map[string]string{"Retry-After": "7"}, rec, &hits))
	c, sl := newTestClient(t, f)
	if _, err := c.Federation().Version(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := sl.get(); len(got) != 1 || got[0] != 7*time.Second {
		t.Errorf("sleeps = %v, want [7s]", got)
	}
}

func TestRetry500ThenSuccessWithBackoff(t *testing.T) {
	f := newFake(t)
	rec := fixtures.Load(t, "fed_event_a_latest")
	var hits atomic.Int32
	f.handle("GET", rec.Request.Path, flaky(3, 500, `{"errcode":"M_UNKNOWN","error":"Internal server error"}`, nil, rec, &hits))
	c, sl := newTestClient(t, f, func(cfg *Config) {
		cfg.BaseBackoff = 100 * time.Millisecond
		cfg.MaxBackoff = 300 * time.Millisecond
	})
	tx, err := c.Federation().Event(ctxT(t), "$gccEMmLNe4QPXsoArt7kezDyb23I1y7kRR6nZ6oevD0")
	if err != nil {
		t.Fatal(err)
	}
	if len(tx.PDUs) != 1 || hits.Load() != 4 {
		t.Errorf("attempts = %d", hits.Load())
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} // doubled, capped
	if got := sl.get(); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("sleeps = %v, want %v", got, want)
	}
	f.assertSigned()
}

func TestGiveUpAfterMaxAttempts(t *testing.T) {
	f := newFake(t)
	var hits atomic.Int32
	f.handle("GET", "/_synapse/admin/v2/users/%40alice%3Asynapse.test", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(502)
		io.WriteString(w, `<html>bad gateway</html>`)
	})
	c, sl := newTestClient(t, f, func(cfg *Config) { cfg.MaxAttempts = 3 })
	_, err := c.Admin().User(ctxT(t), "@alice:synapse.test")
	var re *RetryError
	var e *Error
	if !errors.Is(err, ErrRetriesExhausted) || !errors.As(err, &re) || !errors.As(err, &e) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"GET /_synapse/admin/v2/users/{userId}", "3 attempts", "retry budget spent", "HTTP 502"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, testAdminToken) || strings.Contains(msg, "alice") {
		t.Errorf("error leaks token or ID: %q", msg)
	}
	if hits.Load() != 3 || len(sl.get()) != 2 || re.Attempts != 3 || e.Status != 502 {
		t.Errorf("hits %d sleeps %v attempts %d status %d", hits.Load(), sl.get(), re.Attempts, e.Status)
	}
}

func TestGiveUpWhenServerWaitExceedsBudget(t *testing.T) {
	f := newFake(t)
	rec := fixtures.Load(t, "fed_version")
	var hits atomic.Int32
	f.handle("GET", rec.Request.Path, flaky(5, 429, `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":600000}`, nil, rec, &hits))
	c, sl := newTestClient(t, f, func(cfg *Config) { cfg.MaxTotalWait = time.Minute })
	_, err := c.Federation().Version(ctxT(t))
	if !errors.Is(err, ErrRetriesExhausted) || !errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), "max total wait") {
		t.Fatalf("err = %v", err)
	}
	if len(sl.get()) != 0 || hits.Load() != 1 {
		t.Errorf("sleeps %v, hits %d", sl.get(), hits.Load())
	}
}

func TestNonIdempotentPOSTNotRetriedOn500(t *testing.T) {
	f := newFake(t)
	var hits atomic.Int32
	f.handle("POST", "/_synapse/admin/v1/users/%40alice%3Asynapse.test/login", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(500)
		io.WriteString(w, `{"errcode":"M_UNKNOWN","error":"Internal server error"}`)
	})
	c, sl := newTestClient(t, f)
	_, err := c.Admin().LoginAsUser(ctxT(t), "@alice:synapse.test", time.Time{})
	var e *Error
	if !errors.As(err, &e) || e.Status != 500 || errors.Is(err, ErrRetriesExhausted) {
		t.Fatalf("err = %v", err)
	}
	if hits.Load() != 1 || len(sl.get()) != 0 {
		t.Errorf("login-as retried: %d hits", hits.Load())
	}
}

func TestRetryOnConnectionError(t *testing.T) {
	f := newFake(t)
	rec := fixtures.Load(t, "fed_version")
	var hits atomic.Int32
	f.handle("GET", rec.Request.Path, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		respond(200, rec.Response.Body)(w, r)
	})
	var events []RetryEvent
	c, _ := newTestClient(t, f, func(cfg *Config) {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		cfg.OnRetry = func(e RetryEvent) { events = append(events, e) }
	})
	if _, err := c.Federation().Version(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Status != 0 || events[0].Err == nil {
		t.Errorf("retry events = %+v", events)
	}
}

func TestContextCancelledMidRequest(t *testing.T) {
	f := newFake(t)
	entered := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	var hits atomic.Int32
	f.handle("GET", "/_matrix/federation/v1/version", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		close(entered)
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
	c, sl := newTestClient(t, f)
	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Federation().Version(ctx)
		errc <- err
	}()
	<-entered
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if hits.Load() != 1 || len(sl.get()) != 0 {
		t.Errorf("cancelled request was retried")
	}
}

func TestPerHostConcurrencyLimit(t *testing.T) {
	const limit, n = 3, 12
	f := newFake(t)
	rec := fixtures.Load(t, "admin_v1_server_version")
	entered := make(chan struct{}, n)
	release := make(chan struct{}, n)
	var mu sync.Mutex
	inFlight, maxInFlight := 0, 0
	f.handle("GET", rec.Request.Path, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		if inFlight > maxInFlight {
			maxInFlight = inFlight
		}
		mu.Unlock()
		entered <- struct{}{}
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		respond(200, rec.Response.Body)(w, r)
	})
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.MaxPerHost = limit })
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := c.Admin().ServerVersion(ctxT(t))
			errs <- err
		})
	}
	// Hold `limit` requests; from then on let exactly one finish per new arrival.
	for range limit {
		<-entered
	}
	for range n - limit {
		release <- struct{}{}
		<-entered
	}
	for range limit {
		release <- struct{}{}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if maxInFlight > limit || maxInFlight < 1 {
		t.Errorf("max in flight = %d, limit %d", maxInFlight, limit)
	}
}

func TestHostSemaphoreBlocks(t *testing.T) {
	tr := &transport{cfg: &Config{MaxPerHost: 2}, hosts: map[string]chan struct{}{}}
	r1, err := tr.acquire(t.Context(), "h:1")
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := tr.acquire(t.Context(), "h:1")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := tr.acquire(ctx, "h:1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("third acquire on a full host: %v, want to block until ctx ends", err)
	}
	r3, err := tr.acquire(t.Context(), "other:1")
	if err != nil {
		t.Fatal("another host must have its own limit")
	}
	r1()
	r4, err := tr.acquire(t.Context(), "h:1")
	if err != nil {
		t.Fatal(err)
	}
	r2()
	r3()
	r4()
}

func TestResponseSizeLimit(t *testing.T) {
	f := newFake(t)
	rec := f.serveFixture("fed_backfill_a")
	c, sl := newTestClient(t, f, func(cfg *Config) { cfg.MaxResponseBytes = 1000 })
	_, err := c.Federation().Backfill(ctxT(t), roomA, fixtureQuery(t, rec)["v"], 100)
	if !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if len(f.seen()) != 1 || len(sl.get()) != 0 {
		t.Errorf("too-large response was retried")
	}
}

func TestWrongKeyIsDetectedByFake(t *testing.T) {
	// Guards the signature assertions elsewhere: a client signing with another key must be caught.
	f := newFake(t)
	f.serveFixture("fed_event_a_latest")
	other := testIdentity()
	other.Keys[0].Seed = make([]byte, 32)
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.Identity = other })
	if _, err := c.Federation().Event(ctxT(t), "$gccEMmLNe4QPXsoArt7kezDyb23I1y7kRR6nZ6oevD0"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	n := len(f.authFailures)
	f.mu.Unlock()
	if n != 1 {
		t.Errorf("fake saw %d bad signatures, want 1", n)
	}
	if !signing.IsXMatrix(f.seen()[0].Auth) {
		t.Error("no X-Matrix header")
	}
}

func TestConfigValidationReportsEveryProblem(t *testing.T) {
	_, err := New(Config{
		BaseURL:       "ftp://x",
		FederationURL: "http://",
		ServerName:    "bad name",
		AdminUserID:   "admin",
		Identity:      &signing.Identity{ServerName: "other.test"},
		Timeout:       -1,
		MaxAttempts:   -1,
		MaxPerHost:    -2,
		ServerVersion: "banana",
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, field := range []string{"BaseURL", "FederationURL", "ServerName", "AdminUserID", "Identity", "Timeout", "MaxAttempts", "MaxPerHost", "ServerVersion"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
	_, err = New(Config{})
	if err == nil || !strings.Contains(err.Error(), "BaseURL: required") || !strings.Contains(err.Error(), "ServerName: required") {
		t.Errorf("empty config: %v", err)
	}
	c, err := New(Config{BaseURL: "https://matrix.example.org/", ServerName: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Federation().base.String() != "https://matrix.example.org" || c.cfg.MaxAttempts != DefaultMaxAttempts || c.cfg.MaxPerHost != DefaultMaxPerHost {
		t.Errorf("defaults not applied: %s %+v", c.Federation().base, c.cfg)
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
	}{
		{"1.67.0", Version{1, 67, 0, ""}},
		{"1.140.0rc1", Version{1, 140, 0, "rc1"}},
		{"1.99.0 (b=develop,31e7c6a5)", Version{1, 99, 0, ""}},
		{"v1.2", Version{1, 2, 0, ""}},
	} {
		got, err := ParseVersion(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, bad := range []string{"", "Synapse", "1", "1.x.0"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
	v, _ := ParseVersion("1.140.0rc1")
	if !v.AtLeast(VersionFetchEvent) || v.AtLeast(Version{Major: 1, Minor: 141}) {
		t.Error("AtLeast with rc")
	}
	old, _ := ParseVersion("1.67.0")
	if old.AtLeast(VersionAdminRoomMessages) || !old.AtLeast(Version{Major: 1, Minor: 50}) || !(Version{Major: 2}).AtLeast(old) {
		t.Error("AtLeast")
	}
}

func TestEscapeMatchesSynapseClients(t *testing.T) {
	for in, want := range map[string]string{
		"@alice:synapse.test":              "%40alice%3Asynapse.test",
		"!FxOZIdiZlcgPsSDLHo:synapse.test": "%21FxOZIdiZlcgPsSDLHo%3Asynapse.test",
		"$abc/def+g h":                     "%24abc%2Fdef%2Bg%20h",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParsePDURejectsBadShapes(t *testing.T) {
	for _, bad := range []string{`[]`, `{"prev_events":"x"}`, `{"auth_events":[1]}`, `{"depth":"3"}`, `{"state_key":5}`, `not json`} {
		if _, err := ParsePDU([]byte(bad)); err == nil {
			t.Errorf("ParsePDU(%s) accepted", bad)
		}
	}
	p, err := ParsePDU([]byte(`{"type":"m.room.create","state_key":"","depth":1,"prev_events":[],"auth_events":[["$a:x",{"sha256":"h"}]]}`))
	if err != nil || !p.IsState() || p.AuthEvents[0] != "$a:x" || len(p.PrevEvents) != 0 {
		t.Errorf("p = %+v, %v", p, err)
	}
}

func TestBoolAcceptsSynapseInts(t *testing.T) {
	var v struct{ A, B, C, D Bool }
	if err := jsonUnmarshal(`{"A":1,"B":0,"C":true,"D":null}`, &v); err != nil || !v.A || v.B || !v.C || v.D {
		t.Errorf("%+v %v", v, err)
	}
	if err := jsonUnmarshal(`{"A":"yes"}`, &v); err == nil {
		t.Error("string accepted as Bool")
	}
}

func TestPerAttemptTimeoutIsRetried(t *testing.T) {
	f := newFake(t)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	var hits atomic.Int32
	f.handle("GET", "/_matrix/federation/v1/version", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
	c, sl := newTestClient(t, f, func(cfg *Config) {
		cfg.Timeout = 20 * time.Millisecond
		cfg.MaxAttempts = 2
	})
	_, err := c.Federation().Version(ctxT(t))
	if !errors.Is(err, ErrRetriesExhausted) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(sl.get()) != 1 {
		t.Errorf("sleeps = %v, want one retry", sl.get())
	}
}

func TestParseRetryAfter(t *testing.T) {
	if d := parseRetryAfter([]byte(`{"retry_after_ms":250}`), "9"); d != 250*time.Millisecond {
		t.Errorf("body wins: %s", d)
	}
	if d := parseRetryAfter([]byte(`not json`), "3"); d != 3*time.Second {
		t.Errorf("header seconds: %s", d)
	}
	if d := parseRetryAfter(nil, time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)); d <= 0 {
		t.Errorf("header date: %s", d)
	}
	if d := parseRetryAfter(nil, "soon"); d != 0 {
		t.Errorf("junk header: %s", d)
	}
}
