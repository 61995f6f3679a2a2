package federation

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/signing"
)

// zeros is a request body of n bytes, made as it is read: prefix, then "0," up to n, so the
// client side holds no copy of it.
type zeros struct {
	prefix string
	n, off int
}

// zeroPairs is what zeros copies its body from.
var zeroPairs = strings.Repeat("0,", 32<<10)

func (z *zeros) Read(p []byte) (int, error) {
	if z.off >= z.n {
		return 0, io.EOF
	}
	p = p[:min(len(p), z.n-z.off)]
	n := 0
	if z.off < len(z.prefix) {
		n = copy(p, z.prefix[z.off:])
	}
	for n < len(p) {
		i := (z.off + n - len(z.prefix)) % 2 // keep the 0,0, pattern aligned
		n += copy(p[n:], zeroPairs[i:])
	}
	z.off += n
	return n, nil
}

// TestOversizedUnauthenticatedBodiesHoldHeapDown sends 64 request bodies at once, none of them
// from a signer the shim knows: a third with a made-up origin (never read), a third signed with
// a known key ID but a forged signature and 4 MiB long (read up to the 1 MiB limit), a third the
// same but just under the limit (read and checked). The heap's peak stays within 96 MiB of where
// it started (measured 32–48 MiB on 2 loaded cores; before the headers were checked first and
// bodies read a few at a time, this test measured 887 MiB).
func TestOversizedUnauthenticatedBodiesHoldHeapDown(t *testing.T) {
	const heapBound = 96 << 20
	src := serving()
	s := newTestShim(t, src)
	srv := httptest.NewServer(s.srv)
	defer srv.Close()
	const uri = "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example"
	good, err := signing.SignRequest(s.id, "POST", "hs.example", uri, []byte(`{"latest_events":["$a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	madeUp := good
	madeUp.Origin = "evil.example"
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 64}}

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // sample the heap while the requests are in flight
		defer close(sampled)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var wg sync.WaitGroup
	statuses := make([]int, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			header, body := madeUp.String(), &zeros{prefix: "[", n: 4 << 20}
			switch i % 3 {
			case 1:
				header, body = good.String(), &zeros{prefix: `{"a":[`, n: 4 << 20}
			case 2:
				header, body = good.String(), &zeros{prefix: `{"a":[`, n: 1<<20 - 16}
			}
			var r io.Reader = body
			if i%3 == 2 {
				r = io.MultiReader(body, strings.NewReader("0]}"))
			}
			req, _ := http.NewRequest("POST", srv.URL+uri, r)
			req.Header.Set("Authorization", header)
			resp, err := client.Do(req)
			if err != nil { // the server may close before the client has sent everything
				statuses[i] = -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	growth := int64(peak) - int64(before.HeapAlloc)
	t.Logf("heap before %d MiB, peak %d MiB, growth %d MiB; statuses %v", before.HeapAlloc>>20, peak>>20, growth>>20, statuses)
	if growth > heapBound {
		t.Fatalf("heap grew by %d MiB while 64 unauthenticated bodies arrived, bound %d MiB", growth>>20, heapBound>>20)
	}
	// Which refusal each gets depends on timing (under the race detector bodies may outlast
	// their deadline or their wait for a turn); none gets data.
	for i, st := range statuses {
		switch st {
		case 401, 413, 408, 429, -1: // -1: the shim closed the connection before the body was sent
		default:
			t.Errorf("request %d (kind %d): status %d", i, i%3, st)
		}
	}
	if src.calls != 0 {
		t.Fatalf("the source was asked %d times", src.calls)
	}
}

// rawRequest writes a request on a fresh connection to srv and returns the status line and
// body read until the server closes the connection. A connection still open after 30 s fails
// the test (the bound only keeps a broken shim from hanging the test).
func rawRequest(t *testing.T, srv *httptest.Server, request string, then func(net.Conn)) (status int, body string) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	if then != nil {
		then(conn)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	all, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the connection was not closed: %v (read %q)", err, all)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(all))), nil)
	if err != nil {
		t.Fatalf("no HTTP answer before the close: %v (%q)", err, all)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBodyThatDoesNotArriveIsCutOff sends headers announcing a body and then nothing (or one
// byte): the shim answers and closes the connection once the body read deadline passes,
// whoever the request claims to come from.
func TestBodyThatDoesNotArriveIsCutOff(t *testing.T) {
	src := serving()
	s := newTestShim(t, src, func(c *Config) { c.BodyReadTimeout = 300 * time.Millisecond })
	srv := httptest.NewServer(s.srv)
	defer srv.Close()
	const uri = "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example"
	good, _ := signing.SignRequest(s.id, "POST", "hs.example", uri, []byte(`{"latest_events":["$a"]}`))
	madeUp := good
	madeUp.Origin = "evil.example"
	head := func(auth string) string {
		return "POST " + uri + " HTTP/1.1\r\nHost: hs.example\r\nAuthorization: " + auth + "\r\nContent-Length: 100\r\n\r\n"
	}
	oneByte := func(c net.Conn) { io.WriteString(c, "{") }
	for _, c := range []struct {
		name, request string
		then          func(net.Conn)
		status        int
		errcode       string
	}{
		{"signed, no body", head(good.String()), nil, 408, "M_UNKNOWN"},
		{"signed, one byte of 100", head(good.String()), oneByte, 408, "M_UNKNOWN"},
		{"made-up origin, no body", head(madeUp.String()), nil, 401, "M_UNAUTHORIZED"},
		{"no signature, no body", strings.Replace(head(good.String()), "X-Matrix", "Bearer", 1), nil, 401, "M_UNAUTHORIZED"},
		{"unauthenticated endpoint, no body", "POST /_matrix/key/v2/server HTTP/1.1\r\nHost: hs.example\r\nContent-Length: 100\r\n\r\n", nil, 405, "M_UNRECOGNIZED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := rawRequest(t, srv, c.request, c.then)
			var m map[string]any
			if status != c.status || json.Unmarshal([]byte(body), &m) != nil || m["errcode"] != c.errcode {
				t.Fatalf("%d %s, want %d %s", status, body, c.status, c.errcode)
			}
		})
	}
	if src.calls != 0 {
		t.Fatalf("the source was asked %d times", src.calls)
	}
}

// TestSlowAnswerOutlivesTheBodyDeadline: once the body is in, the body read deadline no longer
// applies, so an answer that takes longer than it (a slow Synapse) is still given.
func TestSlowAnswerOutlivesTheBodyDeadline(t *testing.T) {
	const deadline = 200 * time.Millisecond
	src := serving()
	src.missingEvents = func(ctx context.Context, _ string, _, _ []string, _ int, _ int64) ([]PDU, error) {
		select { // a Synapse that takes three body deadlines to answer
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(3 * deadline):
			return []PDU{PDU(secretPDU)}, nil
		}
	}
	s := newTestShim(t, src, func(c *Config) { c.BodyReadTimeout = deadline })
	srv := httptest.NewServer(s.srv)
	defer srv.Close()
	const uri = "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example"
	body := `{"latest_events":["$a"]}`
	x, _ := signing.SignRequest(s.id, "POST", "hs.example", uri, []byte(body))
	req, _ := http.NewRequest("POST", srv.URL+uri, strings.NewReader(body))
	req.Header.Set("Authorization", x.String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(got), "SECRET-HISTORY") {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
}

// TestBusyBodyReadersAnswerLimitExceeded fills every body-reading turn with bodies that do not
// arrive; the next signed request with a body waits half the body deadline for a turn, then
// gets 429 M_LIMIT_EXCEEDED.
func TestBusyBodyReadersAnswerLimitExceeded(t *testing.T) {
	s := newTestShim(t, serving(), func(c *Config) { c.MaxBodyReaders = 2; c.BodyReadTimeout = time.Second })
	srv := httptest.NewServer(s.srv)
	defer srv.Close()
	const uri = "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example"
	good, _ := signing.SignRequest(s.id, "POST", "hs.example", uri, []byte(`{"latest_events":["$a"]}`))
	head := "POST " + uri + " HTTP/1.1\r\nHost: hs.example\r\nAuthorization: " + good.String() + "\r\nContent-Length: 100\r\n\r\n"
	var wg sync.WaitGroup
	results := make([]int, 3)
	started := make(chan struct{}, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = rawRequest(t, srv, head, func(net.Conn) { started <- struct{}{} })
		}()
	}
	<-started
	<-started
	// The two stalled bodies hold both turns until their deadline; wait until the shim has
	// taken them (a bounded poll), then ask a third time.
	for i := 0; len(s.srv.readers) < 2; i++ {
		if i > 100000 {
			t.Fatal("the stalled requests never took their turns")
		}
		runtime.Gosched()
	}
	status, body := rawRequest(t, srv, head, nil)
	wg.Wait()
	if status != 429 || !strings.Contains(body, "M_LIMIT_EXCEEDED") || !strings.Contains(body, "retry_after_ms") {
		t.Fatalf("third request: %d %s", status, body)
	}
	if fmt.Sprint(results[:2]) != "[408 408]" {
		t.Fatalf("stalled requests: %v", results[:2])
	}
}

// TestRefusalsAreMatrixErrorsWhereTheHandlerSeesThem sends the malformed requests of issue 15
// to the HTTP server the shim runs (NewHTTPServer): what reaches the handler is answered with a
// Matrix error; what Go's HTTP layer refuses before any handler runs gets Go's plain-text answer
// with the status docs/shim.md lists, and this test keeps that list true.
func TestRefusalsAreMatrixErrorsWhereTheHandlerSeesThem(t *testing.T) {
	s := newTestShim(t, serving())
	srv := httptest.NewUnstartedServer(s.srv)
	srv.Config = NewHTTPServer(s.srv, HTTPLimits{}, nil)
	srv.Start()
	defer srv.Close()
	const v = "/_matrix/federation/v1/version"
	get := func(target, headers string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: hs.example\r\n" + headers + "Connection: close\r\n\r\n"
	}
	for _, c := range []struct {
		name, request string
		status        int
		matrix        bool // a Matrix error body (false: Go's plain text, or no body for HEAD)
	}{
		// Seen by the handler: Matrix errors.
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: hs.example\r\nConnection: close\r\n\r\n", 404, true},
		{"unknown path", get("/_matrix/federation/v1/nope", ""), 404, true},
		{"wrong method", "DELETE " + v + " HTTP/1.1\r\nHost: hs.example\r\nConnection: close\r\n\r\n", 405, true},
		{"invalid UTF-8 in an event ID", get("/_matrix/federation/v1/event/%24%FF%FE", ""), 401, true},
		// Refused by Go before the handler: plain text, documented.
		{"headers over the limit", get(v, "X-Pad: "+strings.Repeat("a", DefaultMaxHeaderBytes+4096)+"\r\n"), 431, false},
		{"control byte in a header", get(v, "X-A: a\x01b\r\n"), 400, false},
		{"%ZZ in the path", get("/_matrix/federation/v1/event/%ZZ", ""), 400, false},
		{"HTTP/1.1 without Host", "GET " + v + " HTTP/1.1\r\nConnection: close\r\n\r\n", 400, false},
		{"two Host headers", get(v, "Host: other.example\r\n"), 400, false},
		{"malformed Host", "GET " + v + " HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n", 400, false},
		{"Content-Length: -1", "POST " + v + " HTTP/1.1\r\nHost: hs.example\r\nContent-Length: -1\r\n\r\n", 400, false},
		{"two Content-Lengths", "POST " + v + " HTTP/1.1\r\nHost: hs.example\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, false},
		{"invalid header name", get(v, "Bad Header: x\r\n"), 400, false},
		{"invalid method", "G@T " + v + " HTTP/1.1\r\nHost: hs.example\r\n\r\n", 400, false},
		{"no protocol version", "GET " + v + "\r\n\r\n", 400, false},
		{"unknown protocol version", "GET " + v + " HTTP/2.0\r\nHost: hs.example\r\n\r\n", 505, false},
		{"unknown transfer encoding", get(v, "Transfer-Encoding: gzip\r\n"), 501, false},
		{"unknown Expect", get(v, "Expect: 100-nope\r\nContent-Length: 1\r\n"), 417, false},
		// HEAD: HTTP forbids a body, so the Matrix error is announced by its headers only.
		{"HEAD", "HEAD " + v + " HTTP/1.1\r\nHost: hs.example\r\nConnection: close\r\n\r\n", 405, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, c.request)
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			req := &http.Request{Method: strings.Fields(c.request)[0]}
			resp, err := http.ReadResponse(bufio.NewReader(conn), req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			var m map[string]any
			isMatrix := json.Unmarshal(body, &m) == nil && m["errcode"] != nil
			if resp.StatusCode != c.status || isMatrix != c.matrix {
				t.Fatalf("%d %q, want %d (Matrix error: %v)", resp.StatusCode, body, c.status, c.matrix)
			}
			if c.name == "HEAD" && (resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Allow") != "GET" || resp.ContentLength <= 0) {
				t.Fatalf("HEAD answer headers: %v", resp.Header)
			}
		})
	}
}

func TestInvalidIDsAreRefusedWithoutAskingTheSource(t *testing.T) {
	src := &fakeJoins{fakeSource: serving()}
	s := newJoinShim(t, src)
	for _, uri := range []string{
		"/_matrix/federation/v1/event/%24%FF%FE",
		"/_matrix/federation/v1/backfill/%21r%3Ahs.example?v=%24%FF%FE&limit=10",
		"/_matrix/federation/v1/backfill/%21r%FF%3Ahs.example?v=%24a&limit=10",
		"/_matrix/federation/v1/state_ids/%21r%3Ahs.example?event_id=%24a%0Ab",
		"/_matrix/federation/v1/event_auth/%21r%3Ahs.example/%24%C3%28",
		"/_matrix/federation/v1/make_join/%21r%3Ahs.example/%40a%FF%3Ahs.example?ver=10",
	} {
		code, m, raw := s.do("GET", uri, nil)
		if code != 400 || m["errcode"] != "M_INVALID_PARAM" {
			t.Errorf("%s: %d %s", uri, code, raw)
		}
	}
	if src.calls != 0 {
		t.Fatalf("the source was asked %d times", src.calls)
	}
}

// FuzzBodyBeforeAuth sends get_missing_events requests with any Authorization header and any
// body, or with the body signed properly: the answer is always a Matrix error or a 200, the
// source is asked only when the request verifies, and a refusal never echoes the body.
func FuzzBodyBeforeAuth(f *testing.F) {
	const uri = "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example"
	src := serving()
	var mu sync.Mutex
	s := newTestShim(&testing.T{}, src, func(c *Config) { c.MaxBodyBytes = 4096 })
	good, _ := signing.SignRequest(s.id, "POST", "hs.example", uri, []byte(`{"latest_events":["$a"]}`))
	madeUp := good
	madeUp.Origin = "evil.example"
	f.Add(good.String(), []byte(`{"latest_events":["$a"]}`), false)
	f.Add(good.String(), []byte(`{"latest_events":["$a"],"limit":5,"min_depth":2}`), true)
	f.Add(madeUp.String(), []byte(`[0,0,0,0]`), false)
	f.Add(`X-Matrix origin="hs.example",key="ed25519:a_Shim",sig="x"`, []byte(`{"b":{"a":1},"a":[1e5,"\u0000"]}`), true)
	f.Add("", []byte(strings.Repeat("[", 600)), true)
	f.Fuzz(func(t *testing.T, header string, body []byte, sign bool) {
		mu.Lock()
		defer mu.Unlock()
		if sign {
			if x, err := signing.SignRequest(s.id, "POST", "hs.example", uri, body); err == nil {
				header = x.String()
			}
		}
		req := httptest.NewRequest("POST", uri, strings.NewReader(string(body)))
		req.Header.Set("Authorization", header)
		rec := httptest.NewRecorder()
		before := src.calls
		s.srv.ServeHTTP(rec, req)
		_, verr := signing.VerifyRequest(signing.Request{Method: "POST", URI: uri, Content: body,
			Authorization: req.Header.Values("Authorization")}, "hs.example", s.id.Lookup())
		if src.calls != before && (verr != nil || len(body) > 4096) {
			t.Fatalf("the source was asked for a request that does not verify (%v): %q %q", verr, header, body)
		}
		if rec.Code == 200 {
			if verr != nil {
				t.Fatalf("200 for a request that does not verify (%v)", verr)
			}
			return
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m["errcode"] == nil {
			t.Fatalf("%d answer is not Matrix error JSON: %q", rec.Code, rec.Body)
		}
		if rec.Body.Len() > 512 {
			t.Fatalf("a %d-byte refusal (is the body echoed?): %q", rec.Body.Len(), rec.Body)
		}
	})
}
