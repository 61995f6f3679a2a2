package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/export"
	"github.com/transition-matrix/transition-matrix/logging"
	"github.com/transition-matrix/transition-matrix/synapseclient"
	"github.com/transition-matrix/transition-matrix/synapsedb"
)

// runExport writes one JSON file per local user and per room, and a manifest, into -out;
// rerun with the same -out, it resumes.
func runExport(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "export", "export -config FILE -out DIR [-j N] [-encrypt-to AGE_RECIPIENT] [-synapse-db DSN [-no-login-as]] [-progress-every DURATION]")
	configPath := fs.String("config", "", "the shim's configuration `file` (required)")
	out := fs.String("out", "", "export `directory` (created 0700; rerun with the same one to resume)")
	jobs := fs.Int("j", export.DefaultJobs, "users and rooms exported at once")
	encryptTo := fs.String("encrypt-to", "", "encrypt every user and room file to this age `recipient` (age1...)")
	every := fs.Duration("progress-every", 10*time.Second, "how often to log progress when stderr is not a terminal")
	synapseDB := fs.String("synapse-db", "", "Synapse's database (`DSN`: postgres://... or the SQLite file), read-only: E2EE keys, key backups, push rules and tags are read from it when Synapse refuses login-as (Matrix Authentication Service deployments, locked accounts)")
	noLoginAs := fs.Bool("no-login-as", false, "read per-user client data from -synapse-db even when Synapse offers login-as")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *noLoginAs && *synapseDB == "" {
		return usagef("-no-login-as needs -synapse-db")
	}
	switch {
	case *configPath == "":
		return usagef("-config is required")
	case *out == "":
		return usagef("-out is required")
	case *jobs < 1:
		return usagef("-j must be at least 1, got %d", *jobs)
	}
	cfg, err := loadConfig(env, *configPath, "synapse.url", "synapse.admin_token")
	if err != nil {
		return err
	}
	log, err := logging.New(env.Stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	var db *synapsedb.DB
	if *synapseDB != "" {
		if db, err = synapsedb.Open(ctx, *synapseDB); err != nil {
			return err // synapsedb's errors never show the DSN's password
		}
		defer db.Close()
	}
	p := newExportProgress(env.Stderr, log, *every)
	s, err := export.Run(ctx, export.Config{
		SynapseDB: db,
		NoLoginAs: *noLoginAs,
		Dir:       *out,
		Synapse: synapseclient.Config{
			BaseURL: cfg.Synapse.URL, FederationURL: cfg.FederationURL(), AdminToken: string(cfg.Synapse.AdminToken),
			ServerName: cfg.ServerName, Identity: cfg.Identity,
		},
		Jobs:      *jobs,
		EncryptTo: *encryptTo,
		Log:       log,
		Progress:  p.update,
	})
	p.done()
	if s != nil {
		printExportSummary(env.Stdout, s, cfg.ServerName, *out)
	}
	return err
}

// exportProgress shows the export's progress line.
type exportProgress struct{ *lineReporter }

func newExportProgress(w io.Writer, log *zap.Logger, every time.Duration) *exportProgress {
	return &exportProgress{newLineReporter(w, log, "export progress", every)}
}

func (p *exportProgress) update(s export.Progress) {
	p.report(func() string {
		total, done := s.Users+s.Rooms, s.UsersDone+s.RoomsDone+s.Skipped
		const width = 30
		fill := 0
		if total > 0 {
			fill = done * width / total
		}
		return fmt.Sprintf("[%s%s] users %d/%d rooms %d/%d  %.0f req/s  failed %d",
			strings.Repeat("=", fill), strings.Repeat(" ", width-fill), s.UsersDone, s.Users, s.RoomsDone, s.Rooms,
			rate(s.Requests, s.Elapsed), s.Failed)
	}, func() []zap.Field {
		return []zap.Field{zap.Int("users_done", s.UsersDone), zap.Int("users", s.Users),
			zap.Int("rooms_done", s.RoomsDone), zap.Int("rooms", s.Rooms), zap.Int("failed", s.Failed),
			zap.Int64("requests", s.Requests), zap.Duration("elapsed", s.Elapsed.Round(time.Second))}
	})
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func printExportSummary(w io.Writer, s *export.Summary, server, dir string) {
	state := "complete"
	if !s.Complete {
		state = "INCOMPLETE (rerun the same command to resume)"
	}
	fmt.Fprintf(w, "export of %s into %s: %s\n", server, dir, state)
	fmt.Fprintf(w, "  users: %d of %d exported\n", s.UsersDone, s.Users)
	fmt.Fprintf(w, "  rooms: %d of %d exported\n", s.RoomsDone, s.Rooms)
	if s.Resumed > 0 {
		fmt.Fprintf(w, "  kept from an earlier run (verified by SHA-256): %d\n", s.Resumed)
	}
	fmt.Fprintf(w, "  skipped: %d, failed: %d\n", s.Skipped, s.Failed)
	for _, x := range s.SkippedItems {
		fmt.Fprintf(w, "    skipped %s %s: %s\n", x.Kind, x.ID, x.Reason)
	}
	fmt.Fprintf(w, "  requests: %d in %s (%.0f/s), %.1f MB written\n", s.Requests, s.Elapsed.Round(time.Millisecond),
		rate(s.Requests, s.Elapsed), float64(s.Bytes)/1e6)
	fmt.Fprintf(w, "  login-as tokens: %d made, %d could not be logged out\n", s.LoginTokens, s.LogoutFailures)
	if s.FromSynapseDB > 0 {
		fmt.Fprintf(w, "  users whose client data came from Synapse's database (no login-as): %d\n", s.FromSynapseDB)
	}
}
