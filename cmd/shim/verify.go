package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/transition-matrix/transition-matrix/cacheshare"
	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/config"
	"github.com/transition-matrix/transition-matrix/cutover"
	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/eventsource"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/synapseclient"
	"github.com/transition-matrix/transition-matrix/verify"
)

// verifyDetails is the part of `shim verify -h` after the flags.
const verifyDetails = `Run it after 'shim rejoin' and 'shim warm', before Synapse is shut down. It
asks the target as each local user (the appservice token with ?user_id=): on a real
Conduit, paginating /messages backfills what is not there yet, so an unwarmed room
is slow and its result is what the warm-up would have given.

Source: with Synapse up, rooms, current state and members come from its admin API
and each room's events from the event cache, brought up to date from Synapse first;
with -offline (Synapse shut down), from the export and the event cache as they are.
While 'shim serve' runs on the same cache, verify reads the cache through serve (a
socket beside the cache file, <cache.path>.sock): no copy, serve keeps serving.
Users always come from the export: what the import carried.

Writes OUT/report.json (format: docs/verify.md) and OUT/report.md, and prints a
summary with each room and user that has a problem.

Exit status: 0 everything arrived; 1 something is missing or differs (each room
named with its missing count); 2 verification could not run or is incomplete
(bad configuration, Synapse or the target unreachable, rooms that could not be checked).
`

// runVerify compares the source with the target and writes the report.
// verifyDeviceID is the device verify reads rooms through on targets that need one.
const verifyDeviceID = "TRANSITIONMATRIXVERIFY"

func runVerify(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "verify", "verify -config FILE -export DIR [-target URL] [-out DIR] [-j N] [-strict] [-offline] [-age-identity FILE] [-conduit-db DIR] [-scratch-cache DIR]")
	fs.details = verifyDetails
	configPath := fs.String("config", "", "the shim's configuration `file` (required; needs target.url and target.token)")
	targetURL := fs.String("target", "", "the target's client API `URL` (overrides target.url)")
	exportDir := fs.String("export", "", "the `directory` 'shim export' wrote (required)")
	out := fs.String("out", "verify-report", "the `directory` report.json and report.md are written to")
	jobs := fs.Int("j", verify.DefaultJobs, "rooms and users checked at once")
	strict := fs.Bool("strict", false, "count rooms of versions the target cannot host (1, 2) as problems")
	offline := fs.Bool("offline", false, "Synapse is shut down: verify from the export and the event cache alone")
	ageIdentity := fs.String("age-identity", "", "age identity `file` that decrypts an encrypted export")
	scratch := fs.String("scratch-cache", "", "when another process holds the event cache and no shim serve answers beside it, read every room from Synapse again into a new cache under this `directory` (removed afterwards)")
	conduitDB := fs.String("conduit-db", "", "Conduit's database_path `directory`, read-only (works while Conduit runs): checks every device kept its session")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *exportDir == "" {
		return usagef("-export is required")
	}
	if *jobs < 1 {
		return usagef("-j must be at least 1")
	}
	cfg, log, err := loadConfigAndLogger(env, *configPath, "cache.path")
	if err != nil {
		return exitWith(2, err)
	}
	defer log.Sync()
	if err := cfg.OverrideTargetURL(*targetURL); err != nil {
		return usagef("%v", err)
	}
	noteURLs(env, cfg)
	if err := cfg.Require("target.url", "target.token"); err != nil {
		return exitWith(2, fmt.Errorf("%s: %w", *configPath, err))
	}
	useSynapse := !*offline && cfg.Synapse.URL != ""
	if useSynapse {
		if err := cfg.Require("synapse.admin_token"); err != nil {
			return exitWith(2, fmt.Errorf("%s: %w (or run with -offline)", *configPath, err))
		}
	}

	exp, err := openExport(*exportDir, *ageIdentity)
	if err != nil {
		return exitWith(2, err)
	}
	defer exp.Close()
	if exp.Manifest.ServerName != cfg.ServerName {
		return exitWith(2, fmt.Errorf("the export in %s is of %s, the configuration of %s", *exportDir, exp.Manifest.ServerName, cfg.ServerName))
	}

	var client *synapseclient.Client
	if useSynapse {
		client, err = synapseclient.New(synapseclient.Config{BaseURL: cfg.Synapse.URL, FederationURL: cfg.Synapse.FederationURL,
			AdminToken: string(cfg.Synapse.AdminToken), ServerName: cfg.ServerName, Identity: cfg.Identity,
			Timeout: 30 * time.Second, MaxTotalWait: 30 * time.Second})
		if err != nil {
			return exitWith(2, err)
		}
		// One attempt, so that a Synapse that is down is reported at once.
		probe, err := synapseclient.New(synapseclient.Config{BaseURL: cfg.Synapse.URL, AdminToken: string(cfg.Synapse.AdminToken),
			ServerName: cfg.ServerName, Timeout: 20 * time.Second, MaxAttempts: 1})
		if err != nil {
			return exitWith(2, err)
		}
		_, err = probe.Admin().ServerVersion(ctx)
		if err != nil {
			return exitWith(2, fmt.Errorf("%v; if it is shut down on purpose, rerun with -offline to verify from the export and the event cache", describe(env, err)))
		}
	}

	cache, served, cleanup, err := openVerifyCache(ctx, env, cfg, *scratch, log)
	if err != nil {
		return exitWith(2, err)
	}
	defer cleanup()

	target := &cutover.Client{BaseURL: cfg.Target.URL, Token: string(cfg.Target.Token),
		DeviceID: verifyDeviceID, DeviceName: "transition-matrix verify (removed when verify ends)"}
	defer func() {
		// The devices verify read rooms through (targets that need one) are logged out again.
		if err := target.Close(context.WithoutCancel(ctx)); err != nil {
			log.Warn("verify's devices on the target were not all logged out: remove them with Conduit's admin commands", zap.Error(err))
		}
	}()
	vc := verify.Config{ServerName: cfg.ServerName, Users: exp, TargetURL: cfg.Target.URL, Jobs: *jobs, Strict: *strict,
		Target: target}
	if *conduitDB != "" {
		db, err := conduit.Open(*conduitDB, conduit.Options{ServerName: cfg.ServerName, ReadOnly: true})
		if err != nil {
			return exitWith(2, fmt.Errorf("-conduit-db: %w", err))
		}
		defer db.Close()
		vc.Sessions = db
	}
	switch {
	case served != nil:
		// A running serve holds the cache: it reads the rooms and, with Synapse up, brings them up
		// to date first, as verify would itself.
		vc.Events = verify.ServedEvents(served, client != nil)
	case client != nil:
		src, err := eventsource.New(eventsource.Config{Identity: cfg.Identity, Cache: cache, Upstream: client.Federation(),
			Keys: &eventsource.NotaryKeys{Client: client.Federation(), Identity: cfg.Identity}, Logger: log})
		if err != nil {
			return exitWith(2, err)
		}
		vc.Events = &verify.CacheEvents{Cache: cache, Refresh: func(ctx context.Context, r verify.Room) error {
			return src.ArchiveRoom(ctx, r.RoomID, r.Heads, nil).Err
		}}
	default:
		vc.Events = &verify.CacheEvents{Cache: cache}
	}
	if client != nil {
		vc.SourceName = "synapse " + cfg.Synapse.URL + " and the event cache"
		vc.Rooms = &verify.SynapseRooms{Admin: client.Admin(), ServerName: cfg.ServerName}
	} else {
		vc.SourceName = "the export " + *exportDir + " and the event cache"
		vc.Rooms = exp
	}
	return verifyAndReport(ctx, env, vc, *out)
}

func openExport(dir, identityFile string) (*verify.ExportDir, error) {
	if identityFile == "" {
		return verify.OpenExport(dir)
	}
	ids, err := exportfmt.ReadIdentities(identityFile)
	if err != nil {
		return nil, fmt.Errorf("-age-identity: %w", err)
	}
	return verify.OpenExport(dir, ids...)
}

// openVerifyCache opens the event cache, or, when a running `shim serve` holds it, connects to
// that serve over the cache's socket (served). Only when asked (-scratch-cache DIR) does it read
// every room from Synapse again into a new cache in DIR instead.
func openVerifyCache(ctx context.Context, env *Env, cfg *config.Config, scratch string, log *zap.Logger) (cache *eventcache.Cache, served *cacheshare.Client, cleanup func(), err error) {
	path := cfg.Path(cfg.Cache.Path)
	cache, err = eventcache.Open(path, eventcache.Options{})
	if err == nil {
		return cache, nil, func() { cache.Close() }, nil
	}
	if !errors.Is(err, berrors.ErrTimeout) {
		return nil, nil, nil, fmt.Errorf("opening the event cache: %w", err)
	}
	served, derr := cacheshare.Dial(ctx, path)
	if derr == nil {
		fmt.Fprintf(env.Stderr, "verify: the running shim serve holds the event cache %s: reading it through %s\n", path, served.Socket())
		return nil, served, served.Close, nil
	}
	if scratch == "" {
		return nil, nil, nil, fmt.Errorf("the event cache %s is held by another process, and no shim serve answers beside it (%v): "+
			"wait for that process (a `shim archive`?) to end, or pass -scratch-cache DIR to read every room from Synapse again into a new cache in DIR", path, derr)
	}
	if cfg.Synapse.URL == "" {
		return nil, nil, nil, fmt.Errorf("-scratch-cache: the cache is filled from Synapse, and synapse.url is not set")
	}
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("-scratch-cache: %w", err)
	}
	dir, err := os.MkdirTemp(scratch, "shim-verify-cache-")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-scratch-cache: %w", err)
	}
	log.Warn("the event cache is held by another process: reading every room's events from Synapse again into a scratch cache; this takes as long as `shim archive`",
		zap.String("cache", path), zap.String("scratch", dir))
	cache, err = eventcache.Open(filepath.Join(dir, "cache.db"), eventcache.Options{})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	return cache, nil, func() { cache.Close(); os.RemoveAll(dir) }, nil
}

// verifyAndReport runs the verification, writes the report files, prints the summary and turns
// the result into the exit status.
func verifyAndReport(ctx context.Context, env *Env, vc verify.Config, out string) error {
	if f, ok := env.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		vc.Progress = func(p verify.Progress) {
			fmt.Fprintf(env.Stderr, "\rverify: %d/%d rooms, %d/%d users, %d with problems ", p.RoomsDone, p.Rooms, p.UsersDone, p.Users, p.Problems)
		}
	}
	rep, err := verify.Run(ctx, vc)
	if vc.Progress != nil {
		fmt.Fprintln(env.Stderr)
	}
	if err != nil {
		return exitWith(2, err)
	}
	jsonPath, mdPath, err := verify.WriteFiles(out, rep)
	if err != nil {
		return exitWith(2, fmt.Errorf("writing the report: %w", err))
	}
	if err := verify.WriteSummary(env.Stdout, rep); err != nil {
		return exitWith(2, err)
	}
	fmt.Fprintf(env.Stdout, "Report: %s and %s\n", mdPath, jsonPath)
	switch rep.Result {
	case verify.ResultOK:
		return nil
	case verify.ResultMissing:
		return exitWith(1, nil)
	}
	return exitWith(2, fmt.Errorf("verification is incomplete: %d rooms and %d users could not be checked", rep.Summary.RoomsError, rep.Summary.UsersError))
}
