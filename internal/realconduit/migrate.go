//go:build conduit

package realconduit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/testproc"
)

// Errors of the migration steps.
var (
	ErrStep       = errors.New("realconduit: a shim command failed")
	ErrShimServe  = errors.New("realconduit: shim serve did not become ready")
	ErrShimBuild  = errors.New("realconduit: building cmd/shim failed")
	ErrNoProgress = errors.New("realconduit: warm made no progress before the restart")
)

// Source is the Synapse being migrated; internal/synapsetest's Server has every field.
type Source struct {
	ServerName     string
	URL            string // Synapse's client, admin and federation listener
	ConfigPath     string // homeserver.yaml (server name, signing keys, old keys)
	AdminToken     string // an admin's access token (the admin API)
	MediaStorePath string
	DatabasePath   string // Synapse's SQLite file, or
	DatabaseDSN    string // its PostgreSQL URL
}

// Migration is one migration of a real Synapse into a real Conduit, run step by step with the
// shim commands an admin runs, each one's output kept in Dir/logs.
type Migration struct {
	Source     Source
	Conduit    *Server
	Dir        string // the admin's working directory: shim.yaml, export, cache, reports, logs
	Shim       string // the shim binary
	ConfigPath string // shim.yaml
	ExportDir  string
	ReportDir  string // shim verify's report
	Admin      *Admin
	Appservice Appservice
	ShimURL    string // shim serve's listener, Conduit's self_federation_url
	MetricsURL string // shim serve's Prometheus listener
	// Recorder, when set, stands between Conduit and the shim and records every federation
	// request; Conduit's self_federation_url is then the recorder's URL.
	Recorder *Recorder
	// Steps is what each command did, in order.
	Steps []Step

	t        testing.TB
	serveCmd *exec.Cmd
	serveEnd chan struct{}
	mu       sync.Mutex
}

// Step is one shim command's run.
type Step struct {
	Args     []string
	ExitCode int
	Took     time.Duration
	Output   string // combined stdout and stderr
}

// NewMigration builds cmd/shim, prepares a Conduit (not started) for src's server name and writes
// shim.yaml. opts.ServerName is set from src.
func NewMigration(t testing.TB, src Source, opts Options) *Migration {
	t.Helper()
	if opts.Bin == "" {
		opts.Bin = Bin(t)
	}
	opts.ServerName = src.ServerName
	dir := t.TempDir()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(dir, "conduit")
	}
	m := &Migration{
		Source:     src,
		Conduit:    New(t, opts),
		Dir:        dir,
		ConfigPath: filepath.Join(dir, "shim.yaml"),
		ExportDir:  filepath.Join(dir, "export"),
		ReportDir:  filepath.Join(dir, "verify"),
		Appservice: NewAppservice(),
		t:          t,
	}
	shim, err := BuildShim(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Shim = shim
	t.Cleanup(func() {
		if err := m.StopServe(); err != nil {
			t.Errorf("stopping shim serve: %v", err)
		}
	})
	return m
}

// BuildShim builds cmd/shim of this module into dir and returns the binary's path.
func BuildShim(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := filepath.Join(dir, "shim")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/shim")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: %v\n%s", ErrShimBuild, err, b)
	}
	return out, nil
}

// Run runs the whole migration as docs/cutover.md has the admin run it, and fails t at the first
// step that fails: Conduit's first start (admin account, appservice), stop, export, archive,
// import, shim serve, Conduit with self_federation_url, rejoin, warm with Conduit restarted once
// in the middle, verify. afterExport, when not nil, runs between export and import.
func (m *Migration) Run(ctx context.Context, afterExport func(exportDir string) error) {
	t := m.t
	t.Helper()
	if err := m.FirstStart(ctx); err != nil {
		t.Fatal(err)
	}
	for _, step := range []func(context.Context) error{m.Export, m.Archive} {
		if err := step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if afterExport != nil {
		if err := afterExport(m.ExportDir); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []func(context.Context) error{m.Import, m.Serve, m.StartTarget, m.Rejoin, m.WarmWithRestart} {
		if err := step(ctx); err != nil {
			t.Fatalf("%v\n%s", err, m.Logs())
		}
	}
	// A failed verify is reported, and the caller's own checks still run.
	if err := m.Verify(ctx); err != nil {
		t.Errorf("%v\n%s", err, m.Logs())
	}
}

// Logs are the last lines of Conduit's and shim serve's logs, for failure messages.
func (m *Migration) Logs() string {
	serve, _ := os.ReadFile(filepath.Join(m.Dir, "serve.log"))
	return "Conduit's panics and errors:\n" + m.Conduit.LogGrep("panicked", "ERROR", "WARN") + "\nConduit's log, last lines:\n" + m.Conduit.LogTail(15) + "\nshim serve's log, last lines:\n" + tail(string(serve), 25)
}

// FirstStart starts Conduit on an empty directory (it creates its database and admin room),
// registers the admin account and the appservice, and stops Conduit.
func (m *Migration) FirstStart(ctx context.Context) error {
	a, err := m.Conduit.FirstStart(ctx)
	if err != nil {
		return err
	}
	m.Admin = a
	if err := m.Conduit.RegisterAppservice(ctx, a, m.Appservice); err != nil {
		return err
	}
	if err := m.Conduit.Stop(); err != nil {
		return err
	}
	m.Conduit.RegistrationToken = ""
	return m.writeConfig()
}

// writeConfig writes shim.yaml, the admin token file and the appservice token file (mode 0600).
func (m *Migration) writeConfig() error {
	listen, err := testproc.FreePort()
	if err != nil {
		return err
	}
	metrics, err := testproc.FreePort()
	if err != nil {
		return err
	}
	m.ShimURL = "http://127.0.0.1:" + strconv.Itoa(listen)
	m.MetricsURL = "http://127.0.0.1:" + strconv.Itoa(metrics)
	adminTokenFile := filepath.Join(m.Dir, "admin-token")
	asTokenFile := filepath.Join(m.Dir, "as-token")
	if err := os.WriteFile(adminTokenFile, []byte(m.Source.AdminToken+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(asTokenFile, []byte(m.Appservice.ASToken+"\n"), 0o600); err != nil {
		return err
	}
	q := strconv.Quote
	cfg := fmt.Sprintf(`synapse_config: %s
synapse:
  url: %s
  admin_token_file: %s
  media_store_path: %s
listen: 127.0.0.1:%d
allow_cidrs:
  - 127.0.0.1/32
cache:
  path: %s
metrics:
  listen: 127.0.0.1:%d
target:
  url: %s
  token_file: %s
log:
  level: info
  format: console
`, q(m.Source.ConfigPath), q(m.Source.URL), q(adminTokenFile), q(m.Source.MediaStorePath), listen,
		q(filepath.Join(m.Dir, "cache")), metrics, q(m.Conduit.URL), q(asTokenFile))
	return os.WriteFile(m.ConfigPath, []byte(cfg), 0o600)
}

// RunShim runs one shim command (the config flag is added) and records it as a Step; a non-zero
// exit is an error naming the command and its output.
func (m *Migration) RunShim(ctx context.Context, args ...string) (Step, error) {
	full := append([]string{args[0], "-config", m.ConfigPath}, args[1:]...)
	if args[0] == "import" { // "import conduit -config ..."
		full = append([]string{"import", args[1], "-config", m.ConfigPath}, args[2:]...)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, m.Shim, full...)
	cmd.Dir = m.Dir
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	st := Step{Args: full, Took: time.Since(start), Output: out.String()}
	if cmd.ProcessState != nil {
		st.ExitCode = cmd.ProcessState.ExitCode()
	}
	m.mu.Lock()
	m.Steps = append(m.Steps, st)
	n := len(m.Steps)
	m.mu.Unlock()
	logDir := filepath.Join(m.Dir, "logs")
	_ = os.MkdirAll(logDir, 0o700)
	_ = os.WriteFile(filepath.Join(logDir, fmt.Sprintf("%02d-%s.txt", n, args[0])), []byte("$ shim "+strings.Join(full, " ")+"\n"+st.Output), 0o600)
	if err != nil {
		return st, fmt.Errorf("%w: shim %s: %v (exit %d)\n%s", ErrStep, strings.Join(full, " "), err, st.ExitCode, tail(st.Output, 40))
	}
	return st, nil
}

// Export runs shim export.
func (m *Migration) Export(ctx context.Context) error {
	_, err := m.RunShim(ctx, "export", "-out", m.ExportDir)
	return err
}

// Archive runs shim archive.
func (m *Migration) Archive(ctx context.Context) error {
	_, err := m.RunShim(ctx, "archive")
	return err
}

// Import runs shim import conduit into Conduit's database (Conduit must be stopped).
func (m *Migration) Import(ctx context.Context) error {
	db := m.Source.DatabasePath
	if m.Source.DatabaseDSN != "" {
		db = m.Source.DatabaseDSN
	}
	_, err := m.RunShim(ctx, "import", "conduit", "-export", m.ExportDir, "-db", m.Conduit.DatabasePath,
		"-synapse-db", db, "-report", filepath.Join(m.Dir, "import-report.json"))
	return err
}

// Serve starts shim serve in the background and waits until its listener answers HTTP.
func (m *Migration) Serve(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(m.Dir, "serve.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(m.Shim, "serve", "-config", m.ConfigPath)
	cmd.Dir = m.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	end := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(end) }()
	m.serveCmd, m.serveEnd = cmd, end
	deadline := time.Now().Add(readyTimeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		if resp, err := client.Get(m.ShimURL + "/_matrix/federation/v1/version"); err == nil {
			resp.Body.Close()
			break // any HTTP answer: the listener is up (unsigned requests are refused)
		}
		select {
		case <-end:
			return fmt.Errorf("%w: it exited; see %s", ErrShimServe, filepath.Join(m.Dir, "serve.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w within %s at %s", ErrShimServe, readyTimeout, m.ShimURL)
		}
	}
	return nil
}

// StopServe stops shim serve (SIGTERM); a no-op when it does not run.
func (m *Migration) StopServe() error {
	if m.serveCmd == nil {
		return nil
	}
	_ = m.serveCmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.serveEnd:
	case <-time.After(stopTimeout):
		_ = m.serveCmd.Process.Kill()
		<-m.serveEnd
		return errors.New("realconduit: shim serve did not stop on SIGTERM (killed)")
	}
	m.serveCmd = nil
	return nil
}

// StartTarget starts Conduit on the imported database with self_federation_url pointing at the
// shim (or at the Recorder in front of it).
func (m *Migration) StartTarget(ctx context.Context) error {
	m.Conduit.SelfFederationURL = m.ShimURL
	if m.Recorder != nil {
		if err := m.Recorder.Start(m.ShimURL); err != nil {
			return err
		}
		m.Conduit.SelfFederationURL = m.Recorder.URL
	}
	return m.Conduit.Start()
}

// Rejoin runs shim rejoin.
func (m *Migration) Rejoin(ctx context.Context) error {
	_, err := m.RunShim(ctx, "rejoin")
	return err
}

// Warm runs shim warm once.
func (m *Migration) Warm(ctx context.Context) error {
	_, err := m.RunShim(ctx, "warm")
	return err
}

// WarmWithRestart runs shim warm, restarts Conduit once the first pages are in (the warm state
// file exists), and, when warm gave up on a room meanwhile, runs it again as an admin would: it
// resumes from its state file. The end must be whole either way.
func (m *Migration) WarmWithRestart(ctx context.Context) error {
	statePath := filepath.Join(m.Dir, "cache.warm.json")
	done := make(chan error, 1)
	go func() { done <- m.Warm(ctx) }()
	restarted := false
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var warmErr error
wait:
	for {
		select {
		case warmErr = <-done:
			break wait
		case <-tick.C:
			if restarted {
				continue
			}
			if fi, err := os.Stat(statePath); err == nil && fi.Size() > 0 {
				if err := m.Conduit.Restart(); err != nil {
					<-done
					return fmt.Errorf("restarting Conduit in the middle of warm: %w", err)
				}
				restarted = true
			}
		}
	}
	if !restarted {
		return fmt.Errorf("%w: warm ended (%v) before its state file %s appeared", ErrNoProgress, warmErr, statePath)
	}
	if warmErr != nil {
		m.t.Logf("warm after Conduit's restart: %v; running it again (it resumes)", firstLine(warmErr.Error()))
		return m.Warm(ctx)
	}
	return nil
}

// Verify runs shim verify against the export and Conduit's database; exit 0 means everything arrived.
func (m *Migration) Verify(ctx context.Context) error {
	_, err := m.RunShim(ctx, "verify", "-export", m.ExportDir, "-conduit-db", m.Conduit.DatabasePath, "-out", m.ReportDir)
	return err
}

// ShimMetrics returns shim serve's Prometheus text.
func (m *Migration) ShimMetrics(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", m.MetricsURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

var _ = net.Listen
