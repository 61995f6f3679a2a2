//go:build conduit

package realconduit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/testproc"
)

// EnvBin names the environment variable holding the path of a Conduit binary built with
// contrib/conduit's patch.
const EnvBin = "CONDUIT_BIN"

// Bounds of the harness's waits; they bound polling loops, they are not delays.
const (
	readyTimeout = 120 * time.Second
	stopTimeout  = 60 * time.Second
	pollEvery    = 50 * time.Millisecond
)

// Errors of the harness.
var (
	ErrNotReady   = errors.New("realconduit: Conduit did not become ready")
	ErrExited     = errors.New("realconduit: Conduit exited")
	ErrNotStopped = errors.New("realconduit: Conduit did not stop on SIGTERM")
	ErrRunning    = errors.New("realconduit: Conduit is already running")
	ErrBackend    = errors.New("realconduit: unknown database backend (want sqlite or rocksdb)")
)

// Bin returns the Conduit binary named by CONDUIT_BIN, or skips the test when it is unset.
func Bin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		t.Skipf("realconduit: %s is unset (set it to a Conduit binary built with contrib/conduit's patch)", EnvBin)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("realconduit: %s=%s: %v", EnvBin, bin, err)
	}
	return bin
}

// Options configure a Conduit.
type Options struct {
	Bin        string // the Conduit binary (see Bin)
	ServerName string // the Synapse's server name
	Backend    string // "sqlite" (default) or "rocksdb"
	Dir        string // config, database and log go here (a new temporary directory when empty)
	// SelfFederationURL is the patch's self_federation_url (the shim); empty leaves it unset.
	SelfFederationURL string
	// RegistrationToken, when set, turns registration on with this token (for the admin account).
	RegistrationToken string
	// PasswordPepper is the patch's password_pepper (Synapse's password_config.pepper).
	PasswordPepper string
}

// Server is one Conduit, started and stopped as a process on 127.0.0.1.
type Server struct {
	Options
	URL          string // client and federation API, "http://127.0.0.1:<port>"
	ConfigPath   string // conduit.toml
	DatabasePath string // database_path
	LogPath      string // Conduit's stdout and stderr, appended over restarts

	port int

	mu   sync.Mutex
	proc *testproc.Proc // nil when not started or stopped
}

// New prepares a Conduit in opts.Dir without starting it; t's cleanup stops it.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Backend == "" {
		opts.Backend = "sqlite"
	}
	if opts.Backend != "sqlite" && opts.Backend != "rocksdb" {
		t.Fatalf("%v: %q", ErrBackend, opts.Backend)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Options:      opts,
		ConfigPath:   filepath.Join(opts.Dir, "conduit.toml"),
		DatabasePath: filepath.Join(opts.Dir, "db"),
		LogPath:      filepath.Join(opts.Dir, "conduit.log"),
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping Conduit: %v", err)
		}
	})
	return s
}

// Config is the conduit.toml Start writes: everything a test needs, on loopback.
func (s *Server) Config() string {
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "[global]\n")
	fmt.Fprintf(&b, "server_name = %s\n", q(s.ServerName))
	fmt.Fprintf(&b, "database_backend = %s\n", q(s.Backend))
	fmt.Fprintf(&b, "database_path = %s\n", q(s.DatabasePath))
	fmt.Fprintf(&b, "address = \"127.0.0.1\"\nport = %d\n", s.port)
	fmt.Fprintf(&b, "allow_federation = true\ntrusted_servers = []\nallow_check_for_updates = false\n")
	fmt.Fprintf(&b, "max_request_size = 20000000\nlog = \"warn,conduit=info\"\n")
	if s.RegistrationToken != "" {
		fmt.Fprintf(&b, "allow_registration = true\nregistration_token = %s\n", q(s.RegistrationToken))
	}
	if s.SelfFederationURL != "" {
		fmt.Fprintf(&b, "self_federation_url = %s\n", q(s.SelfFederationURL))
	}
	if s.PasswordPepper != "" {
		fmt.Fprintf(&b, "password_pepper = %s\n", q(s.PasswordPepper))
	}
	return b.String()
}

// Start writes the configuration (a free port on the first start, the same one later) and
// starts Conduit, then waits until /_matrix/client/versions answers 200.
func (s *Server) Start() error {
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		return ErrRunning
	}
	if s.port == 0 {
		port, err := testproc.FreePort()
		if err != nil {
			return fmt.Errorf("realconduit: finding a free port: %w", err)
		}
		s.port = port
		s.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	}
	if err := os.WriteFile(s.ConfigPath, []byte(s.Config()), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(s.Bin)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "CONDUIT_CONFIG="+s.ConfigPath, "RUST_BACKTRACE=0")
	proc, err := testproc.Start(cmd, s.LogPath, false)
	if err != nil {
		return fmt.Errorf("realconduit: starting %s: %w", s.Bin, err)
	}
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := testproc.WaitReady(ctx, s.URL+"/_matrix/client/versions", proc.Exited()); err != nil {
		_ = s.Stop()
		if errors.Is(err, testproc.ErrExited) {
			return fmt.Errorf("%w before it was ready (%v); last log lines:\n%s", ErrExited, proc.ExitErr(), s.LogTail(20))
		}
		return fmt.Errorf("%w: %s/_matrix/client/versions did not answer 200 within %s; see %s", ErrNotReady, s.URL, readyTimeout, s.LogPath)
	}
	return nil
}

// Stop sends SIGTERM and waits for Conduit to exit; it is a no-op when Conduit is not running.
func (s *Server) Stop() error {
	s.mu.Lock()
	proc := s.proc
	s.proc = nil
	s.mu.Unlock()
	if proc == nil {
		return nil
	}
	if err := proc.Stop(stopTimeout); errors.Is(err, testproc.ErrKilled) {
		return fmt.Errorf("%w within %s (killed); see %s", ErrNotStopped, stopTimeout, s.LogPath)
	}
	return nil
}

// Kill ends Conduit with SIGKILL, as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	proc := s.proc
	s.proc = nil
	s.mu.Unlock()
	if proc != nil {
		proc.Kill()
	}
}

// Restart stops and starts Conduit on the same port and database.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Running reports whether the process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && s.proc.Running()
}

// LogTail returns the last n lines of Conduit's log, for failure messages.
func (s *Server) LogTail(n int) string { return testproc.LogTail(s.LogPath, n) }

// LogGrep returns the log lines (at most 30, the first ones) holding any of the words, each with
// the line after it.
func (s *Server) LogGrep(words ...string) string {
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(string(data), "\n")
	var out []string
	for i, l := range lines {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				if i+1 < len(lines) {
					out = append(out, lines[i+1])
				}
				break
			}
		}
		if len(out) >= 60 {
			break
		}
	}
	return strings.Join(out, "\n")
}

// Pid is the running Conduit's process ID, or 0.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}
