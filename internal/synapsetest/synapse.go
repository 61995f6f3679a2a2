// Package synapsetest runs a real Synapse (from a virtualenv named by TM_SYNAPSE_PYTHON) on
// loopback for tests: it writes homeserver.yaml and a signing key itself, uses SQLite or a
// PostgreSQL from internal/pgtest, waits on /health, and stops Synapse in t.Cleanup.
package synapsetest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/transition-matrix/transition-matrix/internal/pgtest"
	"github.com/transition-matrix/transition-matrix/internal/testproc"
	"github.com/transition-matrix/transition-matrix/signing"
)

// EnvPython names the environment variable holding the python of a virtualenv with matrix-synapse
// and psycopg2 installed (the output of scripts/install-synapse).
const EnvPython = "TM_SYNAPSE_PYTHON"

// DefaultServerName is the server name of a Synapse started without Options.ServerName.
const DefaultServerName = "hs.test"

// AdminLocalpart is the localpart of the admin account Start registers.
const AdminLocalpart = "admin"

// Timeouts of the harness; they bound waits on conditions, they are not delays.
const (
	readyTimeout = 180 * time.Second
	stopTimeout  = 30 * time.Second
)

// Errors of the harness.
var (
	ErrNotReady     = errors.New("synapsetest: Synapse did not become ready")
	ErrExited       = errors.New("synapsetest: Synapse exited")
	ErrAddrInUse    = errors.New("synapsetest: port already in use")
	ErrRegistration = errors.New("synapsetest: shared-secret registration failed")
)

// Python returns the python named by TM_SYNAPSE_PYTHON. When it is unset the test is skipped, or
// fails when the environment variable CI is set (CI must always run the real Synapse).
func Python(t testing.TB) string {
	t.Helper()
	py := os.Getenv(EnvPython)
	if py == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("synapsetest: %s is unset; CI must set it to the python printed by scripts/install-synapse VERSION", EnvPython)
		}
		t.Skipf("synapsetest: %s is unset (set it to the python printed by scripts/install-synapse 1.163.2)", EnvPython)
	}
	if _, err := os.Stat(py); err != nil {
		t.Fatalf("synapsetest: %s=%s: %v (run scripts/install-synapse VERSION)", EnvPython, py, err)
	}
	return py
}

// Options choose how Synapse is started.
type Options struct {
	Postgres   bool           // PostgreSQL from internal/pgtest instead of SQLite
	ServerName string         // DefaultServerName when empty
	Config     map[string]any // extra top-level homeserver.yaml keys; they replace the harness's
}

// Server is a running (or stopped) real Synapse on 127.0.0.1.
type Server struct {
	Version        string // Synapse's version, as /_matrix/federation/v1/version reports it
	ServerName     string
	BaseURL        string // client, federation and admin listener, "http://127.0.0.1:<port>"
	Dir            string // config, key, database, media store and log (mode 0700)
	ConfigPath     string // homeserver.yaml
	SigningKeyPath string // the current key, in Synapse's key-file format
	MediaStorePath string
	DatabasePath   string // the SQLite file, or "" with PostgreSQL
	DatabaseDSN    string // the PostgreSQL URL, or "" with SQLite
	LogPath        string // Synapse's stdout, stderr and log
	SharedSecret   string // registration_shared_secret
	AdminUserID    string // "@admin:<server name>", registered by Start
	AdminToken     string
	AdminPassword  string

	python  string
	port    int
	options Options
	keys    []signing.Key // keys[0] signs; the rest are published as old_signing_keys
	expired []int64       // expired_ts of keys[1:], in milliseconds

	mu   sync.Mutex
	proc *testproc.Proc
}

// Start runs Synapse with a fresh database and key on a free port, registers the admin and returns
// once /health answers. It is stopped in t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	py := Python(t)
	if opts.ServerName == "" {
		opts.ServerName = DefaultServerName
	}
	dir, err := os.MkdirTemp(t.TempDir(), "synapse-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		ServerName:     opts.ServerName,
		Dir:            dir,
		ConfigPath:     filepath.Join(dir, "homeserver.yaml"),
		SigningKeyPath: filepath.Join(dir, "signing.key"),
		MediaStorePath: filepath.Join(dir, "media_store"),
		LogPath:        filepath.Join(dir, "synapse.log"),
		SharedSecret:   randomHex(24),
		AdminUserID:    "@" + AdminLocalpart + ":" + opts.ServerName,
		python:         py,
		options:        opts,
		keys:           []signing.Key{key},
	}
	if opts.Postgres {
		s.DatabaseDSN = pgtest.Start(t).CreateDatabase(t)
	} else {
		s.DatabasePath = filepath.Join(dir, "homeserver.db")
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("synapsetest: %v", err)
		}
		if t.Failed() {
			t.Logf("synapse log (%s), last lines:\n%s", s.LogPath, s.LogTail(60))
		}
	})
	// A free port is found by binding :0 and releasing it; another process may take it before
	// Synapse binds, so a start that fails that way is retried on a new port.
	for attempt := 0; ; attempt++ {
		err = s.start(true)
		if err == nil || !errors.Is(err, ErrAddrInUse) || attempt == 2 {
			break
		}
	}
	if err != nil {
		t.Fatalf("%v\nsynapse log, last lines:\n%s", err, s.LogTail(60))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s.AdminPassword = randomHex(12)
	reg, err := s.Register(ctx, AdminLocalpart, s.AdminPassword, true)
	if err != nil {
		t.Fatal(err)
	}
	s.AdminToken = reg.AccessToken
	return s
}

// Stop sends SIGTERM and waits for Synapse to exit; past stopTimeout it is killed and an error
// returned. Stopping a stopped server is harmless.
func (s *Server) Stop() error {
	s.mu.Lock()
	proc := s.proc
	s.mu.Unlock()
	if proc == nil {
		return nil
	}
	if err := proc.Stop(stopTimeout); err != nil {
		return fmt.Errorf("synapse on %s: %w", s.BaseURL, err)
	}
	return nil
}

// Restart stops Synapse and starts it again on the same port, database and keys.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start(false)
}

// RotateKey stops Synapse, makes a new signing key current, lists the previous one under
// old_signing_keys (expired now) and starts Synapse again. It returns the new key.
func (s *Server) RotateKey() (signing.Key, error) {
	if err := s.Stop(); err != nil {
		return signing.Key{}, err
	}
	key, err := newKey()
	if err != nil {
		return signing.Key{}, err
	}
	s.keys = append([]signing.Key{key}, s.keys...)
	s.expired = append([]int64{time.Now().UnixMilli()}, s.expired...)
	return key, s.start(false)
}

// Keys returns Synapse's signing keys: the current one first, then the old ones, newest first.
func (s *Server) Keys() []signing.Key { return append([]signing.Key(nil), s.keys...) }

// Identity is the signing identity of the server: what the shim needs to sign as Synapse.
func (s *Server) Identity() *signing.Identity {
	return &signing.Identity{ServerName: s.ServerName, Keys: s.Keys()}
}

// SupportsRoomVersion reports whether this Synapse knows room version v (v12 came in 1.135).
func (s *Server) SupportsRoomVersion(v string) bool {
	if v != "12" {
		return true
	}
	return versionAtLeast(s.Version, 1, 135)
}

// LogTail returns the last n lines of Synapse's output.
func (s *Server) LogTail(n int) string { return testproc.LogTail(s.LogPath, n) }

// start writes the config and key file and runs Synapse until /health answers. With newPort a
// free port is picked first.
func (s *Server) start(newPort bool) error {
	if newPort || s.port == 0 {
		port, err := testproc.FreePort()
		if err != nil {
			return fmt.Errorf("synapsetest: finding a free port: %w", err)
		}
		s.port = port
		s.BaseURL = "http://127.0.0.1:" + strconv.Itoa(port)
	}
	if err := os.WriteFile(s.SigningKeyPath, signing.FormatKeyFile(s.keys[:1]), 0o600); err != nil {
		return err
	}
	cfg, err := s.config()
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.ConfigPath, cfg, 0o600); err != nil {
		return err
	}
	cmd := exec.Command(s.python, "-m", "synapse.app.homeserver", "-c", s.ConfigPath)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "SYNAPSE_TEST_ALLOW_ROOT=1")
	proc, err := testproc.Start(cmd, s.LogPath, false)
	if err != nil {
		return fmt.Errorf("synapsetest: %s -m synapse.app.homeserver: %w", s.python, err)
	}
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
	if err := s.waitReady(proc); err != nil {
		_ = s.Stop()
		if strings.Contains(s.LogTail(30), "Address already in use") {
			return fmt.Errorf("%w: %s", ErrAddrInUse, s.BaseURL)
		}
		return err
	}
	return s.readVersion()
}

// waitReady polls /health until it answers 200, the process exits, or readyTimeout passes.
func (s *Server) waitReady(proc *testproc.Proc) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	err := testproc.WaitReady(ctx, s.BaseURL+"/health", proc.Exited())
	switch {
	case errors.Is(err, testproc.ErrExited):
		return fmt.Errorf("%w before it was ready (%v); see %s", ErrExited, proc.ExitErr(), s.LogPath)
	case err != nil:
		return fmt.Errorf("%w: %s/health did not answer 200 within %s", ErrNotReady, s.BaseURL, readyTimeout)
	}
	return nil
}

func (s *Server) readVersion() error {
	resp, err := http.Get(s.BaseURL + "/_matrix/federation/v1/version")
	if err != nil {
		return fmt.Errorf("synapsetest: reading the version: %w", err)
	}
	defer resp.Body.Close()
	var v struct {
		Server struct {
			Version string `json:"version"`
		} `json:"server"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Server.Version == "" {
		return fmt.Errorf("synapsetest: /_matrix/federation/v1/version: status %d, no server.version (%v)", resp.StatusCode, err)
	}
	s.Version = v.Server.Version
	return nil
}

// unlimited is a rate far above anything a test sends.
var unlimited = map[string]any{"per_second": 100000, "burst_count": 100000}

// config is homeserver.yaml: one plain-HTTP listener for client and federation on loopback, every
// rc_* limit raised, no key servers, no outbound federation, no stats.
func (s *Server) config() ([]byte, error) {
	old := map[string]any{}
	for i, k := range s.keys[1:] {
		old[string(k.ID)] = map[string]any{"key": signing.EncodeBase64(k.PublicKey()), "expired_ts": s.expired[i]}
	}
	var db map[string]any
	if s.DatabaseDSN != "" {
		u, err := url.Parse(s.DatabaseDSN)
		if err != nil {
			return nil, fmt.Errorf("synapsetest: PostgreSQL DSN: %w", err)
		}
		pw, _ := u.User.Password()
		db = map[string]any{"name": "psycopg2", "args": map[string]any{
			"user": u.User.Username(), "password": pw, "dbname": strings.TrimPrefix(u.Path, "/"),
			"host": u.Hostname(), "port": u.Port(), "cp_min": 1, "cp_max": 5}}
	} else {
		db = map[string]any{"name": "sqlite3", "args": map[string]any{"database": s.DatabasePath}}
	}
	logConfig := filepath.Join(s.Dir, "log.yaml")
	if err := os.WriteFile(logConfig, []byte(logYAML), 0o600); err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"server_name":                 s.ServerName,
		"public_baseurl":              s.BaseURL + "/",
		"pid_file":                    filepath.Join(s.Dir, "homeserver.pid"),
		"report_stats":                false,
		"log_config":                  logConfig,
		"media_store_path":            s.MediaStorePath,
		"signing_key_path":            s.SigningKeyPath,
		"old_signing_keys":            old,
		"trusted_key_servers":         []any{},
		"suppress_key_server_warning": true,
		"registration_shared_secret":  s.SharedSecret,
		"macaroon_secret_key":         randomHex(24),
		"form_secret":                 randomHex(24),
		"enable_registration":         false,
		"database":                    db,
		"listeners": []any{map[string]any{
			"port": s.port, "bind_addresses": []string{"127.0.0.1"}, "type": "http", "tls": false,
			"x_forwarded": false,
			"resources":   []any{map[string]any{"names": []string{"client", "federation"}, "compress": false}},
		}},
		"presence": map[string]any{"enabled": false},
		// Synapse publishes no room to its directory unless a rule allows it (the default is
		// an empty list, which denies): allow it, as a server with a public directory does.
		"room_list_publication_rules":        []any{map[string]any{"action": "allow"}},
		"url_preview_enabled":                false,
		"enable_metrics":                     false,
		"federation_domain_whitelist":        []string{s.ServerName},
		"allow_public_rooms_over_federation": true,
		"rc_message":                         unlimited,
		"rc_registration":                    unlimited,
		"rc_registration_token_validity":     unlimited,
		"rc_login":                           map[string]any{"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
		"rc_admin_redaction":                 unlimited,
		"rc_joins":                           map[string]any{"local": unlimited, "remote": unlimited},
		"rc_joins_per_room":                  unlimited,
		"rc_3pid_validation":                 unlimited,
		"rc_invites":                         map[string]any{"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
		"rc_third_party_invite":              unlimited,
		"rc_key_requests":                    unlimited,
		"rc_media_create":                    unlimited,
		"rc_presence":                        map[string]any{"per_user": unlimited},
		"rc_delayed_event_mgmt":              unlimited,
		"rc_reports":                         unlimited,
		"rc_room_creation":                   unlimited,
		"rc_send_to_device":                  unlimited,
		"rc_federation": map[string]any{
			"window_size": 1000, "sleep_limit": 100000, "sleep_delay": 1, "reject_limit": 100000, "concurrent": 1000},
	}
	for k, v := range s.options.Config {
		cfg[k] = v
	}
	return yaml.Marshal(cfg)
}

// logYAML is Synapse's Python logging config: warnings and errors to stderr (the log file).
const logYAML = `version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: WARNING
  handlers: [console]
disable_existing_loggers: false
`

func newKey() (signing.Key, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return signing.Key{}, err
	}
	return signing.Key{ID: signing.KeyID("ed25519:a_" + randomHex(2)), Seed: seed}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// versionAtLeast reports whether a Synapse version string ("1.163.2", "1.120.2 (b=...)") is at
// least major.minor.
func versionAtLeast(v string, major, minor int) bool {
	v, _, _ = strings.Cut(v, " ")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
