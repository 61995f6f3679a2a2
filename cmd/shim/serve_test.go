package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// selfSignedCert writes a certificate and key for 127.0.0.1 into dir.
func selfSignedCert(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shim test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// startSimWithConfig starts a simulated Synapse serving a world generated with opts and writes the
// demo shim config for it into a new directory dir.
func startSimWithConfig(t testing.TB, opts world.Options) (w *world.World, sim *synapsesim.Server, dir, cfgPath string) {
	t.Helper()
	w, err := world.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	sim = synapsesim.Start(t, synapsesim.Options{World: w})
	dir = t.TempDir()
	if cfgPath, _, err = writeDemoConfig(dir, w, sim.URL, sim.AdminToken()); err != nil {
		t.Fatal(err)
	}
	return w, sim, dir, cfgPath
}

// TestServeTLSMetricsAndGracefulShutdown runs `shim serve` with TLS and a metrics listener against
// a simulated Synapse; an interrupt while a request waits on Synapse lets that request finish.
func TestServeTLSMetricsAndGracefulShutdown(t *testing.T) {
	w, sim, dir, cfgPath := startSimWithConfig(t, world.Options{Seed: 21, Rooms: -1, MessagesPerRoom: 10})
	cert, key := selfSignedCert(t, dir)
	appendConfig(t, cfgPath, "tls:\n  cert: "+cert+"\n  key: "+key+"\nmetrics:\n  listen: 127.0.0.1:0\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan [2]string, 2)
	done := make(chan int, 1)
	env := &Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" },
		Ready: func(what, addr string) { addrs <- [2]string{what, addr} }}
	go func() { done <- Run(ctx, []string{"serve", "-config", cfgPath}, env) }()
	got := map[string]string{}
	for len(got) < 2 {
		select {
		case a := <-addrs:
			got[a[0]] = a[1]
		case code := <-done:
			t.Fatalf("serve exited early with %d", code)
		}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

	room := w.Rooms[0]
	// serve reads the current state with the admin token: make_join works (in another room, so
	// the event asked below is still not cached).
	joinRoom := w.Rooms[1]
	mj := "/_matrix/federation/v1/make_join/" + url.PathEscape(joinRoom.ID) + "/" + url.PathEscape(joinRoom.Creator) + "?ver=" + joinRoom.Version
	xj, err := signing.SignRequest(sim.Identity(), "GET", w.ServerName, mj, nil)
	if err != nil {
		t.Fatal(err)
	}
	mreq, _ := http.NewRequest("GET", "https://"+got["federation"]+mj, nil)
	mreq.Header.Set("Authorization", xj.String())
	mresp, err := client.Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if mresp.StatusCode != http.StatusOK || gjson.GetBytes(mbody, "room_version").String() != joinRoom.Version {
		t.Fatalf("make_join through serve: %d %s", mresp.StatusCode, mbody)
	}

	path := "/_matrix/federation/v1/event/" + url.PathEscape(room.Latest().ID)
	x, err := signing.SignRequest(sim.Identity(), "GET", w.ServerName, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	hold := sim.Faults().Hold("fed.event")
	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", "https://"+got["federation"]+path, nil)
		req.Header.Set("Authorization", x.String())
		resp, err := client.Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answered <- answer{status: resp.StatusCode, body: string(b)}
	}()
	<-hold.Arrived() // the request is in flight, waiting on Synapse

	resp, err := http.Get("http://" + got["metrics"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metricsText), "go_goroutines") {
		t.Fatalf("metrics listener: %d %.200s", resp.StatusCode, metricsText)
	}

	cancel() // SIGINT: stop accepting, let the request in flight finish
	hold.Release()
	a := <-answered
	if a.err != nil || a.status != http.StatusOK || gjson.Get(a.body, "pdus.0.room_id").String() != room.ID {
		t.Fatalf("request in flight during shutdown: %+v", a)
	}
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d after interrupt", code)
	}
	if _, err := client.Get("https://" + got["federation"] + "/_matrix/federation/v1/version"); err == nil {
		t.Fatal("the listener still answers after shutdown")
	}
}

// TestServePortInUseIsAClearError: a port in use is exit status 2 (could not run), named with the
// address, and leaves no empty cache file behind.
func TestServePortInUseIsAClearError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	w, err := world.Generate(world.Options{Seed: 22, Rooms: -1, Users: -1, MessagesPerRoom: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath, _, err := writeDemoConfig(dir, w, "http://127.0.0.1:1", "token")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(data), "listen: 127.0.0.1:0", "listen: "+busy.Addr().String(), 1)), 0o600)
	code, _, errOut := runShim(t, nil, "serve", "-config", cfgPath)
	if code != exitCannotRun || !strings.Contains(errOut, "listen "+busy.Addr().String()) || !strings.Contains(errOut, "address already in use") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache.db")); !os.IsNotExist(err) {
		t.Fatalf("a serve that could not start left its cache file: %v", err)
	}
}

// TestServePrintsWhereItListens: with log.level warn (the demo's configuration) and port 0, serve
// still says on stderr where it listens, and that is where it answers.
func TestServePrintsWhereItListens(t *testing.T) {
	w, err := world.Generate(world.Options{Seed: 22, Rooms: -1, Users: -1, MessagesPerRoom: 1})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath, _, err := writeDemoConfig(dir, w, "http://127.0.0.1:1", "token")
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(cfgPath); !strings.Contains(string(data), "level: warn") || !strings.Contains(string(data), "listen: 127.0.0.1:0") {
		t.Fatalf("the test wants log.level warn and port 0:\n%s", data)
	}
	var stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	ready := make(chan string, 1)
	env := &Env{Stdout: io.Discard, Stderr: &stderr, Getenv: func(string) string { return "" },
		Ready: func(what, addr string) { ready <- addr }}
	go func() { done <- Run(ctx, []string{"serve", "-config", cfgPath}, env) }()
	var addr string
	select {
	case addr = <-ready:
	case code := <-done:
		t.Fatalf("serve exited with %d: %s", code, stderr.String())
	}
	// Ready is told once the listener accepts, after the line is printed.
	want := "at http://" + addr + "\n"
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("serve did not print %q on stderr; it printed %q", want, stderr.String())
	}
	resp, err := http.Get("http://" + addr + "/_matrix/federation/v1/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d after cancel", code)
	}
}

// lockedBuffer is a bytes.Buffer safe for a command writing while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
