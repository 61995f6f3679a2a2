package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/config"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/importer"
	"github.com/transition-matrix/transition-matrix/masdb"
	"github.com/transition-matrix/transition-matrix/mediastore"
	"github.com/transition-matrix/transition-matrix/synapseclient"
	"github.com/transition-matrix/transition-matrix/synapsedb"
)

// importListMax is how many names a list of the summary shows; -report has them all.
const importListMax = 20

// runImport writes an export, and what only Synapse's database and media store hold, into a
// stopped Conduit's database: `shim import conduit`.
func runImport(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprint(env.Stdout, "Usage: shim import conduit -config FILE -export DIR -db PATH [flags]\n\nRun 'shim import conduit -h' for the flags.\n")
			return nil
		}
		return usagef("the target is missing: shim import conduit ...")
	}
	if args[0] != "conduit" {
		return usagef("unknown target %q: the only target is conduit", args[0])
	}
	return runImportConduit(ctx, env, args[1:])
}

func runImportConduit(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "import conduit", "import conduit -config FILE -export DIR [-db PATH] [-backend sqlite|rocksdb] [-conduit-config conduit.toml] [-synapse-db DSN] [-mas-db DSN] [-media-store DIR] [-conduit-media DIR] [-age-identity FILE] [-dry-run] [-j N] [-report FILE] [-progress-every DURATION]")
	fs.details = `Conduit must be stopped, and must have been started once with this server_name and its
database_backend (that creates the database, its server user and admin room). The RocksDB backend
needs the shim-rocksdb helper beside the shim, on PATH, or in $SHIM_ROCKSDB (see README).
The export is verified in full (manifest, SHA-256 and size of every file) before anything is
written; every user is written in one transaction; a second run changes nothing.
Exit status: 0 done, 1 something was refused or failed (named on stderr), 2 could not
run (wrong usage or a problem in the configuration; nothing was written).
`
	configPath := fs.String("config", "", "the shim's configuration `file` (required): server name and Synapse's signing keys")
	exportDir := fs.String("export", "", "the export `directory` written by shim export (required)")
	dbPath := fs.String("db", "", "Conduit's database_path `directory` (conduit.db or a RocksDB database; default database_path of -conduit-config)")
	backend := fs.String("backend", "", "Conduit's database_backend, sqlite or rocksdb (default: -conduit-config's, else what -db holds)")
	conduitConfig := fs.String("conduit-config", "", "Conduit's configuration `file` (conduit.toml): database_backend, database_path and server_name are read from it")
	conduitMedia := fs.String("conduit-media", "", "Conduit's media `directory` (default <db>/media, Conduit's default)")
	synapseDB := fs.String("synapse-db", "", "Synapse's database: a PostgreSQL `DSN` (postgres://...) or an SQLite file; carries access tokens and one-time keys")
	masDB := fs.String("mas-db", "", "the Matrix Authentication Service's PostgreSQL database (`DSN` postgres://...), read-only, for a Synapse that hands its logins to MAS: carries password hashes and compatibility sessions (with -synapse-db, one-time keys come from Synapse)")
	mediaStore := fs.String("media-store", "", "Synapse's media_store_path `directory` (default synapse.media_store_path from the config)")
	identity := fs.String("age-identity", "", "age identity `file` that decrypts an export written with -encrypt-to")
	dryRun := fs.Bool("dry-run", false, "print what would be written, and write nothing")
	jobs := fs.Int("j", importer.DefaultJobs, "users read and planned at once (one database writer)")
	report := fs.String("report", "", "also write the full report as JSON to this `file` (mode 0600; names users, holds no secrets)")
	every := fs.Duration("progress-every", 10*time.Second, "how often to log progress when stderr is not a terminal")
	if err := fs.parse(args); err != nil {
		return err
	}
	switch {
	case *configPath == "":
		return usagef("-config is required")
	case *exportDir == "":
		return usagef("-export is required")
	case *dbPath == "" && *conduitConfig == "":
		return usagef("-db (or -conduit-config) is required")
	case *backend != "" && *backend != conduit.BackendSQLite && *backend != conduit.BackendRocksDB:
		return usagef("-backend must be sqlite or rocksdb, got %q", *backend)
	case *jobs < 1:
		return usagef("-j must be at least 1, got %d", *jobs)
	}
	cfg, log, err := loadConfigAndLogger(env, *configPath)
	if err != nil {
		return err
	}
	dir, be := *dbPath, *backend
	if *conduitConfig != "" {
		cc, err := conduit.ReadConfig(*conduitConfig)
		if err != nil {
			return err
		}
		if cc.ServerName != "" && cc.ServerName != cfg.ServerName {
			return fmt.Errorf("%w: %s has server_name %q, the shim's configuration %q", conduit.ErrConfig, *conduitConfig, cc.ServerName, cfg.ServerName)
		}
		if be == "" {
			be = cc.Backend
		} else if be != cc.Backend {
			return fmt.Errorf("%w: -backend %s, but %s has database_backend %q", conduit.ErrConfig, be, *conduitConfig, cc.Backend)
		}
		if dir == "" {
			dir = cc.DatabasePath
		}
	}
	if filepath.Base(dir) == conduit.FileName {
		if st, err := os.Stat(dir); err == nil && !st.IsDir() {
			dir = filepath.Dir(dir)
		}
	}
	icfg := importer.Config{
		ExportDir:  *exportDir,
		Identity:   cfg.Identity,
		OpenTarget: importer.ConduitTargetOn(conduit.Options{ServerName: cfg.ServerName, MediaPath: *conduitMedia, Backend: be}, dir),
		DryRun:     *dryRun,
		Jobs:       *jobs,
		Log:        log,
	}
	if *identity != "" {
		ids, err := exportfmt.ReadIdentities(*identity)
		if err != nil {
			return fmt.Errorf("-age-identity: %w", err)
		}
		icfg.Identities = ids
	}
	if *synapseDB != "" {
		db, err := synapsedb.Open(ctx, *synapseDB)
		if err != nil {
			return err // synapsedb's errors never show the DSN's password
		}
		defer db.Close()
		icfg.Sessions = importer.SynapseSessions{DB: db}
	}
	if *masDB != "" {
		mdb, err := masdb.Open(ctx, *masDB)
		if err != nil {
			return err // masdb's errors never show the DSN's password
		}
		defer mdb.Close()
		icfg.Sessions = importer.MASSessions{MAS: mdb, ServerName: cfg.ServerName, Synapse: icfg.Sessions}
	}
	media, err := importMediaSource(cfg, *mediaStore, *jobs)
	if err != nil {
		return err
	}
	icfg.Media = media
	p := newImportProgress(env.Stderr, log, *every)
	icfg.Progress = p.update
	r, runErr := importer.Run(ctx, icfg)
	p.done()
	if r != nil {
		printImportSummary(env.Stdout, r)
		if *report != "" {
			if err := writeImportReport(*report, r); err != nil && runErr == nil {
				runErr = err
			}
		}
	}
	return runErr
}

func writeImportReport(path string, r *importer.Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("-report: %w", err)
	}
	return nil
}

// importProgress shows the import's progress line.
type importProgress struct{ *lineReporter }

func newImportProgress(w io.Writer, log *zap.Logger, every time.Duration) *importProgress {
	return &importProgress{newLineReporter(w, log, "import progress", every)}
}

func (p *importProgress) update(s importer.Progress) {
	p.report(func() string {
		return fmt.Sprintf("%-6s users %d/%d  media %d/%d  failed %d  %s", s.Phase, s.UsersDone, s.Users, s.MediaDone, s.Media,
			s.Failed, s.Elapsed.Round(time.Second))
	}, func() []zap.Field {
		return []zap.Field{zap.String("phase", s.Phase), zap.Int("users_done", s.UsersDone), zap.Int("users", s.Users),
			zap.Int("media_done", s.MediaDone), zap.Int("media", s.Media), zap.Int("failed", s.Failed),
			zap.Duration("elapsed", s.Elapsed.Round(time.Second))}
	})
}

// printImportSummary prints the summary table: what was carried, rows changed per tree, and who
// has to do something (reset a password, log in again). It names users, never secrets.
func printImportSummary(w io.Writer, r *importer.Report) {
	verb, state := "imported", "done"
	if r.DryRun {
		verb, state = "would import", "DRY RUN, nothing written"
	}
	if len(r.Failed) > 0 {
		state += fmt.Sprintf(", %d FAILED", len(r.Failed))
	}
	target := r.Target
	if target == "" {
		target = "(database not opened)"
	}
	fmt.Fprintf(w, "import of %s into %s: %s\n", r.ServerName, target, state)
	tw := func(label string, format string, args ...any) {
		fmt.Fprintf(w, "  %-26s %s\n", label, fmt.Sprintf(format, args...))
	}
	c := r.Planned
	tw("users", "%d of %d %s", r.Imported, r.Users, verb)
	tw("devices", "%d (%d with keys)", c.Devices, c.DeviceKeys)
	if r.SessionsCarried {
		tw("access tokens", "%d (devices stay logged in)", c.AccessTokens)
		tw("one-time keys", "%d", c.OneTimeKeys)
		tw("fallback keys not carried", "%d (Conduit has none; clients upload new ones)", r.FallbackKeys)
	} else {
		tw("access tokens", "none: no -synapse-db, every device must log in again")
	}
	tw("cross-signing keys", "%d", c.CrossSigningKeys)
	tw("key backups", "%d versions, %d sessions", c.BackupVersions, c.BackupSessions)
	tw("account data", "%d events (push rules and tags included)", c.AccountData)
	tw("pushers", "%d", c.Pushers)
	switch {
	case r.Media.NoSource:
		tw("media", "not imported (no -media-store and no synapse.media_store_path)")
	default:
		tw("media", "%d of %d %s, %.1f MB; %d skipped", r.Media.Carried, r.Media.Listed, verb, float64(r.Media.Bytes)/1e6, len(r.Media.Skipped))
	}
	what := "rows changed"
	if r.DryRun {
		what = "rows that would change"
	}
	fmt.Fprintf(w, "%s by tree: %d\n", what, r.Rows.Total())
	trees := make([]string, 0, len(r.Rows))
	for t := range r.Rows {
		trees = append(trees, t)
	}
	sort.Strings(trees)
	for _, t := range trees {
		fmt.Fprintf(w, "  %-34s %d\n", t, r.Rows[t])
	}
	list(w, "users with a bcrypt password: they log in on a Conduit with the transition-matrix patch, and need a password reset on an unpatched one", r.PasswordReset)
	list(w, "users without a password in Synapse (SSO, appservices): they got an unusable hash", r.NoPassword)
	list(w, "deactivated users (kept deactivated)", r.Deactivated)
	list(w, "users who must log in again on at least one device", r.MustLogIn)
	var oauth []string
	for _, d := range r.SignInAgain {
		oauth = append(oauth, d.UserID+" device "+d.DeviceID)
	}
	list(w, "must sign in again (OAuth 2.0 sessions of the Matrix Authentication Service cannot be carried)", oauth)
	if r.SkippedTokens > 0 || r.ExpiringTokens > 0 {
		fmt.Fprintf(w, "tokens: %d not carried (no exported device, or expired); %d had an expiry Conduit does not keep\n", r.SkippedTokens, r.ExpiringTokens)
	}
	var notes []string
	for _, n := range r.Notes {
		notes = append(notes, n.UserID+": "+n.Text)
	}
	list(w, "not carried", notes)
	var skipped []string
	for _, s := range r.Media.Skipped {
		skipped = append(skipped, s.ID+": "+s.Err)
	}
	list(w, "media skipped", skipped)
	var failed []string
	for _, f := range r.Failed {
		failed = append(failed, f.Kind+" "+f.ID+": "+f.Err)
	}
	list(w, "FAILED (rerun after fixing: what was written stays, nothing is written twice)", failed)
	fmt.Fprintf(w, "elapsed: %s\n", r.Elapsed.Round(time.Millisecond))
}

// list prints a titled list, at most importListMax lines.
func list(w io.Writer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintf(w, "%s: %d\n", title, len(items))
	for i, s := range items {
		if i == importListMax {
			fmt.Fprintf(w, "  ... and %d more (-report FILE lists them all)\n", len(items)-i)
			break
		}
		fmt.Fprintf(w, "  %s\n", s)
	}
}

// importMediaSource lists local media through Synapse's admin API and reads their files from
// Synapse's media store (-media-store, or synapse.media_store_path); nil when neither is given.
func importMediaSource(cfg *config.Config, store string, jobs int) (importer.MediaSource, error) {
	if store == "" {
		store = cfg.MediaStorePath()
	}
	if store == "" {
		return nil, nil
	}
	if err := cfg.Require("synapse.url", "synapse.admin_token"); err != nil {
		return nil, fmt.Errorf("media: Synapse's admin API lists the media to import: %w", err)
	}
	ms, err := mediastore.Open(store)
	if err != nil {
		return nil, err
	}
	cli, err := synapseclient.New(synapseclient.Config{BaseURL: cfg.Synapse.URL, AdminToken: string(cfg.Synapse.AdminToken),
		ServerName: cfg.ServerName, Identity: cfg.Identity, MaxPerHost: jobs, Timeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	return importer.SynapseMedia{Admin: cli.Admin(), Store: ms, Jobs: jobs}, nil
}
