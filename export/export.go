// Package export writes the admin's record of a Synapse server before the switch: one JSON file per
// local user and per room, and a manifest with the SHA-256 of every file. It reads Synapse's
// admin, client (login-as) and federation (signed as the server itself) APIs, writes every file
// atomically into a directory it cannot leave, and resumes where a killed run stopped.
package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/synapseclient"
	"github.com/transition-matrix/transition-matrix/synapsedb"
)

// Defaults of Config.
const (
	// DefaultJobs suits a Synapse with default rate limits: its main process handles requests on
	// one core, and rc_federation processes 3 federation requests of one origin at a time.
	DefaultJobs                  = 4
	DefaultFederationConcurrency = 3
	DefaultTokenValidity         = time.Hour
	DefaultMaxFailures           = 10
	DefaultItemAttempts          = 3
	DefaultManifestInterval      = time.Second
)

// Config is what an export needs.
type Config struct {
	// Dir is the export directory (created 0700).
	Dir string
	// Synapse says how to reach Synapse; ServerName, AdminToken and Identity are required.
	// MaxPerHost is raised to Jobs when lower.
	Synapse synapseclient.Config
	// Jobs is how many users and rooms are exported at once (default DefaultJobs).
	Jobs int
	// FederationConcurrency bounds concurrent federation requests (default 3, Synapse's
	// rc_federation.concurrent).
	FederationConcurrency int
	// EncryptTo, when set, is an age recipient ("age1..."): every user and room file is written
	// encrypted to it as <name>.json.age. The manifest stays readable.
	EncryptTo string
	// TokenValidity bounds the life of each login-as token, in case logging it out fails.
	TokenValidity time.Duration
	// ItemAttempts is how often an item is tried before it counts as failed (default 3): a
	// failure the HTTP layer does not retry (a non-idempotent login-as, a corrupted answer)
	// gets another chance from scratch.
	ItemAttempts int
	// MaxFailures stops the export after this many items failed (default 10).
	MaxFailures int
	// ManifestInterval is how often the manifest is rewritten while items complete (default 1s);
	// a kill loses at most this much bookkeeping, never a file's integrity.
	ManifestInterval time.Duration
	// FS replaces the directory (tests inject a full disk); nil opens Dir.
	FS FS
	// Log receives warnings and errors; nil discards them.
	Log *zap.Logger
	// Progress, when set, is called after every item and at the end.
	Progress func(Progress)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// SynapseDB is Synapse's database, opened read-only: when Synapse refuses login-as (a
	// deployment that hands its logins to the Matrix Authentication Service, or a proxy), E2EE
	// keys, key backups, push rules and tags are read from it instead of the client API.
	SynapseDB *synapsedb.DB
	// NoLoginAs reads per-user client data from SynapseDB even when Synapse offers login-as.
	NoLoginAs bool
}

// Progress is the state of a running export.
type Progress struct {
	Users, Rooms         int // on the server
	UsersDone, RoomsDone int // complete, resumed included
	Resumed              int // found complete and intact from an earlier run
	Skipped, Failed      int
	Requests             int64
	Bytes                int64 // written by this run
	Elapsed              time.Duration
}

// Summary is what an export did.
type Summary struct {
	Progress
	Complete bool
	// SkippedItems and FailedItems say which items and why.
	SkippedItems, FailedItems []exportfmt.Skipped
	// LoginTokens is the number of login-as tokens made; LogoutFailures how many could not be
	// logged out (they expire after Config.TokenValidity).
	LoginTokens, LogoutFailures int64
	// FromSynapseDB counts the users whose client data came from Synapse's database.
	FromSynapseDB int64
	Dir           string
}

type exporter struct {
	cfg        Config
	cli        *synapseclient.Client
	fsys       FS
	log        *zap.Logger
	now        func() time.Time
	serverName string
	adminID    string
	recipient  age.Recipient

	passwordHashes map[string]string
	dbOnly         bool // per-user client data comes from Synapse's database
	pushMu         sync.Mutex
	push           *pushTemplate // the base push rules, derived on first use of the database
	fedSem         chan struct{}
	started        time.Time

	mu       sync.Mutex
	man      *exportfmt.Manifest
	dirty    bool
	progress Progress

	stats struct {
		requests, bytes, tokens, logoutFailures, dbUsers atomic.Int64
	}
}

func (c *Config) validate() (age.Recipient, error) {
	var errs []error
	if c.Dir == "" && c.FS == nil {
		errs = append(errs, errors.New("the export directory is required"))
	}
	if c.Jobs < 0 {
		errs = append(errs, fmt.Errorf("jobs: %d is negative", c.Jobs))
	}
	if c.Synapse.ServerName == "" {
		errs = append(errs, errors.New("server name: required"))
	}
	if c.Synapse.AdminToken == "" {
		errs = append(errs, errors.New("admin token: required"))
	}
	if c.Synapse.Identity == nil || len(c.Synapse.Identity.Keys) == 0 {
		errs = append(errs, errors.New("signing key: required (federation requests are signed as the server)"))
	}
	var rcpt age.Recipient
	if c.EncryptTo != "" {
		rs, err := age.ParseRecipients(strings.NewReader(c.EncryptTo))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("encrypt-to: %q is not an age recipient: %v", c.EncryptTo, err))
		case len(rs) != 1:
			errs = append(errs, fmt.Errorf("encrypt-to: want one age recipient, got %d", len(rs)))
		default:
			rcpt = rs[0]
		}
	}
	return rcpt, errors.Join(errs...)
}

// Run exports every local user and every room of the Synapse in cfg into cfg.Dir. Rerun with the
// same directory, it keeps what the manifest records as complete and intact and does the rest.
// It returns an error when anything is left undone; the summary is valid either way.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	rcpt, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if cfg.Jobs == 0 {
		cfg.Jobs = DefaultJobs
	}
	if cfg.FederationConcurrency <= 0 {
		cfg.FederationConcurrency = DefaultFederationConcurrency
	}
	if cfg.TokenValidity <= 0 {
		cfg.TokenValidity = DefaultTokenValidity
	}
	if cfg.ItemAttempts <= 0 {
		cfg.ItemAttempts = DefaultItemAttempts
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = DefaultMaxFailures
	}
	if cfg.ManifestInterval <= 0 {
		cfg.ManifestInterval = DefaultManifestInterval
	}
	e := &exporter{cfg: cfg, log: cfg.Log, now: cfg.Now, serverName: cfg.Synapse.ServerName, recipient: rcpt,
		fedSem: make(chan struct{}, cfg.FederationConcurrency)}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.started = e.now()
	if e.cli, err = e.newClient(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	e.fsys = cfg.FS
	if e.fsys == nil {
		fsys, closer, err := OpenDir(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		defer closer.Close()
		e.fsys = fsys
	}
	return e.run(ctx)
}

func (e *exporter) run(ctx context.Context) (*Summary, error) {
	items, err := e.prepare(ctx)
	if err != nil {
		return e.summary(false), fmt.Errorf("export: %w", err)
	}
	pending := e.resumable(items)
	schedule(pending)
	e.report()

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopErr error // why the run stopped early (disk full, manifest not writable)
	var stopOnce sync.Once
	stop := func(err error) {
		stopOnce.Do(func() { stopErr = err; cancel() })
	}
	flushDone := make(chan struct{})
	go func() {
		defer close(flushDone)
		t := time.NewTicker(e.cfg.ManifestInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := e.flush(false); err != nil {
					stop(err)
					return
				}
			}
		}
	}()

	var workers errgroup.Group
	workers.SetLimit(e.cfg.Jobs)
	var failures atomic.Int64
	for _, it := range pending {
		if ctx.Err() != nil {
			break
		}
		workers.Go(func() error {
			err := e.exportItem(ctx, it)
			switch {
			case err == nil:
			case ctx.Err() != nil:
			case errors.Is(err, ErrDiskFull):
				stop(err)
			default:
				e.recordFailure(it, err)
				if failures.Add(1) >= int64(e.cfg.MaxFailures) {
					stop(fmt.Errorf("stopped after %d failed items", e.cfg.MaxFailures))
				}
			}
			e.report()
			return nil
		})
	}
	_ = workers.Wait() // the workers report through stop and the manifest, never an error
	cancel()
	<-flushDone

	e.mu.Lock()
	failed := append([]exportfmt.Skipped(nil), e.man.Failed...)
	e.mu.Unlock()
	exportfmt.SortSkipped(failed)
	complete := stopErr == nil && parent.Err() == nil && len(failed) == 0
	if err := e.flush(complete); err != nil && stopErr == nil {
		stopErr = err
	}
	s := e.summary(complete)
	e.report()
	switch {
	case complete:
		return s, nil
	case stopErr != nil:
		return s, fmt.Errorf("export: %w; %s", stopErr, failedText(failed))
	case len(failed) > 0:
		return s, fmt.Errorf("export: incomplete: %s", failedText(failed))
	default:
		return s, fmt.Errorf("export: interrupted; rerun the same command to resume")
	}
}

func failedText(failed []exportfmt.Skipped) string {
	if len(failed) == 0 {
		return "rerun the same command to resume"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d item(s) failed, rerun the same command to retry them:", len(failed))
	for i, f := range failed {
		if i == 5 {
			fmt.Fprintf(&b, "\n  ... and %d more (see manifest.json \"failed\")", len(failed)-5)
			break
		}
		fmt.Fprintf(&b, "\n  %s %s: %s", f.Kind, f.ID, f.Reason)
	}
	return b.String()
}

// exportItem tries an item up to ItemAttempts times.
func (e *exporter) exportItem(ctx context.Context, it item) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = e.exportOnce(ctx, it)
		if err == nil || attempt >= e.cfg.ItemAttempts || ctx.Err() != nil || errors.Is(err, ErrDiskFull) {
			return err
		}
		e.log.Warn("retrying", zap.String("kind", it.kind), zap.String("id", it.id), zap.Int("attempt", attempt), zap.Error(err))
		t := time.NewTimer(time.Duration(attempt) * 100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// exportOnce reads, renders, writes and records one item.
func (e *exporter) exportOnce(ctx context.Context, it item) error {
	var v any
	var err error
	if it.kind == exportfmt.KindUser {
		v, err = e.exportUser(ctx, it.user)
	} else {
		v, err = e.exportRoom(ctx, it.room)
	}
	if errors.Is(err, errGone) {
		e.mu.Lock()
		e.man.Skipped = append(e.man.Skipped, exportfmt.Skipped{Kind: it.kind, ID: it.id, Reason: "no longer exists on the server"})
		e.progress.Skipped++
		e.dirty = true
		e.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	data, err := encodeJSON(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", it.path, err)
	}
	if e.recipient != nil {
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, e.recipient)
		if err != nil {
			return fmt.Errorf("encrypting %s: %w", it.path, err)
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("encrypting %s: %w", it.path, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("encrypting %s: %w", it.path, err)
		}
		data = buf.Bytes()
	}
	if err := writeAtomic(e.fsys, it.path, data); err != nil {
		return err
	}
	e.stats.bytes.Add(int64(len(data)))
	e.mu.Lock()
	e.man.Files[it.path] = exportfmt.FileEntry{Kind: it.kind, ID: it.id, SHA256: exportfmt.SHA256Hex(data), Size: int64(len(data))}
	if it.kind == exportfmt.KindUser {
		e.progress.UsersDone++
	} else {
		e.progress.RoomsDone++
	}
	e.dirty = true
	e.mu.Unlock()
	return nil
}

func (e *exporter) recordFailure(it item, err error) {
	e.log.Error("export failed", zap.String("kind", it.kind), zap.String("id", it.id), zap.Error(err))
	e.mu.Lock()
	e.man.Failed = append(e.man.Failed, exportfmt.Skipped{Kind: it.kind, ID: it.id, Reason: err.Error()})
	e.progress.Failed++
	e.dirty = true
	e.mu.Unlock()
}

// flush rewrites the manifest if it changed (always when final).
func (e *exporter) flush(final bool) error {
	e.mu.Lock()
	if !e.dirty && !final {
		e.mu.Unlock()
		return nil
	}
	m := *e.man
	m.Files = make(map[string]exportfmt.FileEntry, len(e.man.Files))
	users, rooms := 0, 0
	for k, v := range e.man.Files {
		m.Files[k] = v
		if v.Kind == exportfmt.KindUser {
			users++
		} else {
			rooms++
		}
	}
	m.Skipped = append([]exportfmt.Skipped{}, e.man.Skipped...)
	m.Failed = append([]exportfmt.Skipped{}, e.man.Failed...)
	m.Counts.UserFiles, m.Counts.RoomFiles, m.Counts.Skipped = users, rooms, len(m.Skipped)
	if final {
		done := e.now().UTC()
		m.FinishedAt = &done
		m.Complete = true
	}
	e.dirty = false
	e.mu.Unlock()
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	if err := writeAtomic(e.fsys, exportfmt.ManifestName, data); err != nil {
		e.mu.Lock()
		e.dirty = true
		e.mu.Unlock()
		return err
	}
	return nil
}

func (e *exporter) snapshot() Progress {
	e.mu.Lock()
	p := e.progress
	e.mu.Unlock()
	p.Requests = e.stats.requests.Load()
	p.Bytes = e.stats.bytes.Load()
	p.Elapsed = e.now().Sub(e.started)
	return p
}

func (e *exporter) report() {
	if e.cfg.Progress != nil {
		e.cfg.Progress(e.snapshot())
	}
}

func (e *exporter) summary(complete bool) *Summary {
	s := &Summary{Progress: e.snapshot(), Complete: complete, Dir: e.cfg.Dir,
		LoginTokens: e.stats.tokens.Load(), LogoutFailures: e.stats.logoutFailures.Load(), FromSynapseDB: e.stats.dbUsers.Load()}
	if e.man != nil {
		e.mu.Lock()
		s.SkippedItems = append([]exportfmt.Skipped(nil), e.man.Skipped...)
		s.FailedItems = append([]exportfmt.Skipped(nil), e.man.Failed...)
		e.mu.Unlock()
		exportfmt.SortSkipped(s.SkippedItems)
		exportfmt.SortSkipped(s.FailedItems)
	}
	return s
}
