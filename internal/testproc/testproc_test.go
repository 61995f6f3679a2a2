package testproc

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envHelper makes the test binary act as a server: its value is "port" or "port,ignore-term".
const envHelper = "TESTPROC_HELPER"

func TestMain(m *testing.M) {
	if v := os.Getenv(envHelper); v != "" {
		port, mode, _ := strings.Cut(v, ",")
		if mode == "ignore-term" {
			signal.Ignore(syscall.SIGTERM)
		}
		http.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
		os.Stdout.WriteString("helper listening\n")
		_ = http.ListenAndServe("127.0.0.1:"+port, nil)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func startHelper(t *testing.T, mode string) (*Proc, string) {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envHelper+"="+strconv.Itoa(port)+mode)
	p, err := Start(cmd, filepath.Join(t.TempDir(), "helper.log"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/ready"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitReady(ctx, url, p.Exited()); err != nil {
		t.Fatalf("WaitReady: %v\nlog:\n%s", err, LogTail(p.LogPath, 20))
	}
	return p, url
}

func TestStartWaitReadyStop(t *testing.T) {
	p, _ := startHelper(t, "")
	if !p.Running() || p.Pid() == 0 {
		t.Fatalf("Running=%v Pid=%d after WaitReady, want a running process", p.Running(), p.Pid())
	}
	if err := p.Stop(30 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if p.Running() {
		t.Fatal("Running after Stop")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("second Stop: %v, want nil", err)
	}
	if got := LogTail(p.LogPath, 5); !strings.Contains(got, "helper listening") {
		t.Fatalf("log tail %q lacks the helper's output", got)
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	p, _ := startHelper(t, ",ignore-term")
	if err := p.Stop(200 * time.Millisecond); !errors.Is(err, ErrKilled) {
		t.Fatalf("Stop = %v, want ErrKilled", err)
	}
	if p.Running() {
		t.Fatal("Running after a kill")
	}
}

func TestWaitReadyExited(t *testing.T) {
	p, err := Start(exec.Command("sh", "-c", "echo boom; exit 3"), filepath.Join(t.TempDir(), "x.log"), false)
	if err != nil {
		t.Fatal(err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = WaitReady(ctx, "http://127.0.0.1:"+strconv.Itoa(port)+"/ready", p.Exited())
	if !errors.Is(err, ErrExited) {
		t.Fatalf("WaitReady = %v, want ErrExited", err)
	}
	if p.ExitErr() == nil {
		t.Fatal("ExitErr is nil for exit status 3")
	}
	if got := LogTail(p.LogPath, 1); got != "boom" {
		t.Fatalf("LogTail = %q, want boom", got)
	}
}

func TestWaitReadyNotReady(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = WaitReady(ctx, "http://127.0.0.1:"+strconv.Itoa(port)+"/ready", make(chan struct{}))
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("WaitReady = %v, want ErrNotReady", err)
	}
}

func TestStartAppendsOrTruncates(t *testing.T) {
	log := filepath.Join(t.TempDir(), "a.log")
	for _, tc := range []struct {
		truncate bool
		want     string
	}{{false, "one"}, {false, "one\none"}, {true, "one"}} {
		p, err := Start(exec.Command("echo", "one"), log, tc.truncate)
		if err != nil {
			t.Fatal(err)
		}
		<-p.Exited()
		if got := LogTail(log, 10); got != tc.want {
			t.Fatalf("truncate=%v: log %q, want %q", tc.truncate, got, tc.want)
		}
	}
}
