// Package importer writes a verified export (and what only Synapse's database and media store
// hold: access tokens, one-time keys, media files) into a Conduit database, offline: the server's
// signing keys, every user with devices, E2EE keys, key backups, account data and pushers, and
// every local media item under the same media ID. It verifies the whole export before it writes
// anything, writes each user in one transaction, and changes nothing when run a second time.
package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"filippo.io/age"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/signing"
)

// DefaultJobs is how many users are read and planned at once; the database has one writer.
const DefaultJobs = 4

// Config is what an import needs.
type Config struct {
	// ExportDir is the directory shim export wrote.
	ExportDir string
	// Identities decrypt an age-encrypted export.
	Identities []age.Identity
	// Identity is the server name and Synapse's signing key (current and old), from the
	// shim's configuration.
	Identity *signing.Identity
	// OpenTarget opens the Conduit database; dryRun asks for one that computes the changes and
	// writes nothing. It is called only after the export was verified.
	OpenTarget func(dryRun bool) (Target, error)
	// Sessions reads access tokens and one-time keys from Synapse's database; nil when none was
	// given (every device must then log in again).
	Sessions SessionSource
	// Media lists local media and opens their files; nil skips media.
	Media MediaSource
	// DryRun computes and reports what would be written, and writes nothing.
	DryRun bool
	// Jobs is how many users are read and planned at once (default DefaultJobs).
	Jobs int
	// Log receives warnings; nil discards them. Secrets are never logged.
	Log *zap.Logger
	// Progress, when set, is called as users and media items complete.
	Progress func(Progress)
	// Now is the clock (default time.Now); it decides which Synapse tokens have expired.
	Now func() time.Time
}

// Progress is the state of a running import.
type Progress struct {
	Phase            string // "verify", "users", "media"
	UsersDone, Users int
	MediaDone, Media int
	Failed           int
	Elapsed          time.Duration
}

// Target is a Conduit database the import writes into. Every method is one transaction and
// returns the rows it changed (or, opened for a dry run, would change); writing what is already
// there changes nothing.
type Target interface {
	// Describe names the database: path, version and media layout.
	Describe() string
	WriteKeys(ctx context.Context, k *KeysPlan) (Changes, error)
	// WriteUser writes one user and everything of it.
	WriteUser(ctx context.Context, u *UserPlan) (Changes, error)
	WriteMedia(ctx context.Context, m *MediaPlan) (Changes, error)
	// RaiseCounters makes Conduit's global counter at least min (it never lowers it), so that
	// Conduit's own later writes never collide with imported rows.
	RaiseCounters(ctx context.Context, min uint64) (Changes, error)
	Close() error
}

// SessionSource is Synapse's database: access tokens and one-time keys of a user's devices.
type SessionSource interface {
	UserSessions(ctx context.Context, userID string) (*Sessions, error)
}

// MediaSource lists the local media of the exported users (the admin API) and opens their files
// (Synapse's media store).
type MediaSource interface {
	LocalMedia(ctx context.Context, users []string) ([]MediaItem, error)
	Open(ctx context.Context, m MediaItem) (io.ReadCloser, error)
}

// MediaItem is one local upload.
type MediaItem struct {
	MediaID     string
	ContentType string
	UploadName  string
	UserID      string // uploader; "" when unknown
	CreatedTS   int64  // ms
	Size        int64
	// Quarantined items are not carried: Synapse refuses to serve them.
	Quarantined bool
	// Authenticated items were uploaded with Synapse's authenticated media on: Synapse serves
	// them only on the authenticated endpoints, and so will Conduit. Others stay reachable on
	// the legacy unauthenticated endpoints, as Conduit does for the media it migrated itself.
	Authenticated bool
	// SHA256 is the hex sha256 Synapse recorded at upload ("" from Synapse 1.120 and older): the import
	// names the file by it instead of hashing again, and checks the copied bytes against it.
	SHA256 string
}

// MediaPlan is one media item to write under the same media ID.
type MediaPlan struct {
	MediaItem
	Open func() (io.ReadCloser, error)
}

// ErrRefused marks a refusal before anything was written (the export or the database).
var ErrRefused = errors.New("refused")

// Run imports cfg.ExportDir into the database cfg.OpenTarget opens. The export is verified in
// full first; a refusal of the export or of the database writes nothing. Users and media items
// that fail are reported in Report.Failed and the error says how many; the report is valid
// whenever it is not nil.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Identity == nil || cfg.Identity.ServerName == "" {
		return nil, fmt.Errorf("import: the server name and signing key are required")
	}
	if cfg.OpenTarget == nil {
		return nil, fmt.Errorf("import: no target database")
	}
	if cfg.Jobs <= 0 {
		cfg.Jobs = DefaultJobs
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	im := &importer{cfg: cfg, started: cfg.Now()}
	im.report = &Report{DryRun: cfg.DryRun, ServerName: cfg.Identity.ServerName, Rows: Changes{},
		SessionsCarried: cfg.Sessions != nil, Media: MediaReport{NoSource: cfg.Media == nil}}
	err := im.run(ctx)
	im.report.Elapsed = cfg.Now().Sub(im.started)
	im.report.sort()
	if err == nil && len(im.report.Failed) > 0 {
		err = fmt.Errorf("import: %d items failed (first: %s %s: %s)", len(im.report.Failed), im.report.Failed[0].Kind, im.report.Failed[0].ID, im.report.Failed[0].Err)
	}
	return im.report, err
}

type importer struct {
	cfg     Config
	started time.Time
	x       *Export
	target  Target

	mu       sync.Mutex
	report   *Report
	progress Progress
}

func (im *importer) run(ctx context.Context) error {
	im.progress.Phase = "verify"
	im.tick()
	x, err := OpenExport(im.cfg.ExportDir, im.cfg.Identity.ServerName, im.cfg.Identities)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	defer x.Close()
	im.x = x
	im.report.Users = len(x.Users)
	im.progress.Users = len(x.Users)
	keys, err := planKeys(im.cfg.Identity, x.Manifest)
	if err != nil {
		return fmt.Errorf("%w: signing key: %w", ErrRefused, err)
	}
	// Every user file must plan cleanly before the database is opened.
	if err := im.forEachUser(ctx, false, func(ref FileRef, p *UserPlan, err error) error {
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrRefused, ref.Path, err)
		}
		return nil
	}); err != nil {
		return err
	}
	var media []MediaItem
	if im.cfg.Media != nil {
		users := make([]string, len(x.Users))
		for i, u := range x.Users {
			users[i] = u.ID
		}
		if media, err = im.cfg.Media.LocalMedia(ctx, users); err != nil {
			return fmt.Errorf("%w: listing local media: %w", ErrRefused, err)
		}
		im.progress.Media = len(media)
	}

	t, err := im.cfg.OpenTarget(im.cfg.DryRun)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	defer t.Close()
	im.target = t
	im.report.Target = t.Describe()

	ch, err := t.WriteKeys(ctx, keys)
	if err != nil {
		return fmt.Errorf("writing the signing keys: %w", err)
	}
	im.report.Rows.add(ch)

	im.progress.Phase = "users"
	var maxBackup uint64
	err = im.forEachUser(ctx, true, func(ref FileRef, p *UserPlan, err error) error {
		if err == nil {
			var ch Changes
			ch, err = t.WriteUser(ctx, p)
			if err == nil {
				im.account(p, ch)
				if p.Backup != nil {
					if v, perr := strconv.ParseUint(p.Backup.Version, 10, 64); perr == nil {
						maxBackup = max(maxBackup, v)
					}
				}
			}
		}
		im.mu.Lock()
		defer im.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			im.report.Failed = append(im.report.Failed, Failure{Kind: "user", ID: ref.ID, Err: err.Error()})
			im.progress.Failed++
			im.cfg.Log.Warn("user not imported", zap.String("user", ref.ID), zap.Error(err))
		}
		im.progress.UsersDone++
		im.tickLocked()
		return nil
	})
	if err != nil {
		return err
	}

	if im.cfg.Media != nil {
		im.progress.Phase = "media"
		if err := im.importMedia(ctx, media); err != nil {
			return err
		}
	}

	ch, err = t.RaiseCounters(ctx, maxBackup)
	if err != nil {
		return fmt.Errorf("raising Conduit's counters: %w", err)
	}
	im.report.Rows.add(ch)
	im.tick()
	return nil
}

// account adds a written user to the report.
func (im *importer) account(p *UserPlan, ch Changes) {
	im.mu.Lock()
	defer im.mu.Unlock()
	r := im.report
	r.Imported++
	r.Rows.add(ch)
	r.Planned.addPlan(p)
	switch p.PasswordKind {
	case PasswordBcrypt:
		r.PasswordReset = append(r.PasswordReset, p.UserID)
	case PasswordNone:
		r.NoPassword = append(r.NoPassword, p.UserID)
	case PasswordDeactivated:
		r.Deactivated = append(r.Deactivated, p.UserID)
	}
	for _, d := range p.Devices {
		if d.AccessToken == "" {
			r.MustLogIn = append(r.MustLogIn, p.UserID)
			break
		}
	}
	for _, d := range p.SignInAgain {
		r.SignInAgain = append(r.SignInAgain, DeviceRef{UserID: p.UserID, DeviceID: d})
	}
	r.FallbackKeys += p.FallbackKeys
	r.SkippedTokens += p.SkippedTokens
	r.ExpiringTokens += p.ExpiringTokens
	for _, n := range p.Notes {
		r.Notes = append(r.Notes, Note{UserID: p.UserID, Text: n})
	}
}

// forEachUser reads and plans every user with cfg.Jobs workers (with Synapse's sessions when
// withSessions) and hands each plan, or the error that stopped it, to fn, one at a time. fn's
// error stops the walk.
func (im *importer) forEachUser(ctx context.Context, withSessions bool, fn func(FileRef, *UserPlan, error) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		ref  FileRef
		plan *UserPlan
		err  error
	}
	results := make(chan result, im.cfg.Jobs)
	go func() {
		defer close(results)
		var workers errgroup.Group
		workers.SetLimit(im.cfg.Jobs)
		for _, ref := range im.x.Users {
			if ctx.Err() != nil {
				break
			}
			workers.Go(func() error {
				p, err := im.planOne(ctx, ref, withSessions)
				select {
				case results <- result{ref, p, err}:
				case <-ctx.Done():
				}
				return nil
			})
		}
		_ = workers.Wait() // each worker's error travels in its result
	}()
	for r := range results {
		if err := fn(r.ref, r.plan, r.err); err != nil {
			cancel()
			for range results {
			}
			return err
		}
	}
	return ctx.Err()
}

// planOne reads one user file (verifying it again) and plans it.
func (im *importer) planOne(ctx context.Context, ref FileRef, withSessions bool) (*UserPlan, error) {
	if ref.ID == "@conduit:"+im.cfg.Identity.ServerName {
		return nil, fmt.Errorf("%s is Conduit's own server user: rename the Synapse account before the switch", ref.ID)
	}
	u, err := im.x.ReadUser(ref)
	if err != nil {
		return nil, err
	}
	var s *Sessions
	if withSessions && im.cfg.Sessions != nil {
		if s, err = im.cfg.Sessions.UserSessions(ctx, u.UID); err != nil {
			return nil, fmt.Errorf("reading sessions from Synapse's database: %w", err)
		}
	}
	return planUser(u, s, im.cfg.Now().UnixMilli())
}

// importMedia writes every local media item that is not quarantined.
func (im *importer) importMedia(ctx context.Context, items []MediaItem) error {
	im.report.Media.Listed = len(items)
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if it.Quarantined {
			im.report.Media.Skipped = append(im.report.Media.Skipped, Failure{Kind: "media", ID: it.MediaID, Err: "quarantined in Synapse: not carried"})
		} else {
			it := it
			ch, err := im.target.WriteMedia(ctx, &MediaPlan{MediaItem: it, Open: func() (io.ReadCloser, error) { return im.cfg.Media.Open(ctx, it) }})
			if err != nil {
				im.report.Failed = append(im.report.Failed, Failure{Kind: "media", ID: it.MediaID, Err: err.Error()})
				im.progress.Failed++
				im.cfg.Log.Warn("media not imported", zap.String("media_id", it.MediaID), zap.Error(err))
			} else {
				im.report.Rows.add(ch)
				im.report.Media.Carried++
				im.report.Media.Bytes += it.Size
			}
		}
		im.mu.Lock()
		im.progress.MediaDone++
		im.tickLocked()
		im.mu.Unlock()
	}
	return nil
}

func (im *importer) tick() {
	im.mu.Lock()
	defer im.mu.Unlock()
	im.tickLocked()
}

func (im *importer) tickLocked() {
	if im.cfg.Progress != nil {
		p := im.progress
		p.Elapsed = im.cfg.Now().Sub(im.started)
		im.cfg.Progress(p)
	}
}
