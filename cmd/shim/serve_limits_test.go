package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// TestServeAppliesTheConfiguredLimits starts `shim serve` with small limits from the file: a
// signed request whose body never arrives is answered 408 and its connection closed once
// limits.body_read_timeout passes, and headers over limits.max_header_bytes get Go's 431.
func TestServeAppliesTheConfiguredLimits(t *testing.T) {
	w, sim, _, cfgPath := startSimWithConfig(t, world.Options{Seed: 22, Rooms: -1, MessagesPerRoom: 5})
	appendConfig(t, cfgPath, "limits:\n  body_read_timeout: 300ms\n  max_header_bytes: 4096\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan string, 1)
	done := make(chan int, 1)
	env := &Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" },
		Ready: func(what, addr string) {
			if what == "federation" {
				addrs <- addr
			}
		}}
	go func() { done <- Run(ctx, []string{"serve", "-config", cfgPath}, env) }()
	var addr string
	select {
	case addr = <-addrs:
	case code := <-done:
		t.Fatalf("serve exited early with %d", code)
	}
	ask := func(request string) (*http.Response, string) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, request)
		conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // only keeps a broken serve from hanging the test
		all, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("the connection was not closed: %v", err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(all))), nil)
		if err != nil {
			t.Fatalf("no answer: %v %q", err, all)
		}
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	const uri = "/_matrix/federation/v1/get_missing_events/%21r%3Asynapse.test"
	x, err := signing.SignRequest(sim.Identity(), "POST", w.ServerName, uri, []byte(`{"latest_events":["$a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := ask("POST " + uri + " HTTP/1.1\r\nHost: " + w.ServerName + "\r\nAuthorization: " + x.String() + "\r\nContent-Length: 100\r\n\r\n")
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(gjson.Get(body, "error").String(), "300ms") {
		t.Fatalf("body that never arrives: %d %s", resp.StatusCode, body)
	}
	resp, _ = ask("GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: " + w.ServerName + "\r\nX-Pad: " + strings.Repeat("a", 8192) + "\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("headers over limits.max_header_bytes: %d", resp.StatusCode)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d after interrupt", code)
	}
}
