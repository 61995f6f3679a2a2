package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/cutover"
)

// runWarm pages /messages backwards on the target, as a local member, through every room until
// m.room.create arrives, so the target backfills each room's whole history from the shim now
// instead of when a user scrolls up. It is resumable: a state file keeps each room's last token.
func runWarm(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "warm", "warm -config FILE [-target URL] [-j N] [-state FILE] [-limit N] [-stall N] [-retries N] [-log-every DURATION]")
	fs.details = "Needs synapse.url, synapse.admin_token, target.url (or -target) and target.token. `shim serve`\n" +
		"must be running, and `shim rejoin` must have run. Rerun to continue: rooms done are skipped.\n"
	configPath := fs.String("config", "", "the shim's configuration `file` (required)")
	targetURL := fs.String("target", "", "the target's client API `URL` (overrides target.url)")
	parallel := fs.Int("j", 4, "rooms paged at once")
	statePath := fs.String("state", "", "the resume state `file` (default: next to the cache, <cache.path>.warm.json)")
	limit := fs.Int("limit", 100, "events per /messages page (Conduit caps it at 100)")
	stall := fs.Int("stall", 3, "give a room up after this many pages in a row that bring nothing")
	retries := fs.Int("retries", 3, "retries of a failed request to the target (429, 5xx or no answer), with backoff")
	progressEvery := fs.Duration("log-every", 10*time.Second, "interval of progress log lines when stderr is not a terminal")
	if err := fs.parse(args); err != nil {
		return err
	}
	switch {
	case *parallel < 1:
		return usagef("-j must be at least 1")
	case *limit < 1:
		return usagef("-limit must be at least 1")
	case *stall < 1:
		return usagef("-stall must be at least 1")
	case *retries < 0:
		return usagef("-retries must not be negative")
	}
	cfg, err := loadTargetConfig(env, *configPath, *targetURL)
	if err != nil {
		return err
	}
	log, err := newLogger(env, cfg)
	if err != nil {
		return err
	}
	defer log.Sync()
	if *statePath == "" {
		*statePath = cfg.Path(cfg.Cache.Path) + ".warm.json"
	}
	store, err := cutover.OpenWarmState(*statePath, cfg.ServerName)
	if err != nil {
		return err
	}
	admin, err := newAdminClient(cfg)
	if err != nil {
		return err
	}
	rooms, err := cutover.Rooms(ctx, admin, cfg.ServerName)
	if err != nil {
		return err
	}
	target := newTargetClient(cfg, *retries+1, warmDeviceID, "transition-matrix warm (removed when warm ends)")
	target.OnRetry = func(endpoint string, attempt int, err error) {
		log.Warn("retrying a request to the target", zap.String("endpoint", endpoint), zap.Int("attempt", attempt), zap.Error(err))
	}
	wm := &cutover.Warmer{Target: target, Store: store, Limit: *limit, Stall: *stall}
	prog := newWarmProgress(env.Stderr, len(rooms), *progressEvery, log, wm)
	results := wm.WarmAll(ctx, rooms, *parallel)
	prog.stop()
	if err := target.Close(context.WithoutCancel(ctx)); err != nil {
		log.Warn("the devices warm logged in for /messages could not all be removed", zap.Error(err))
	}
	if err := printWarmTable(env.Stdout, results); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: rerun the same command to continue where it stopped (state in %s)", *statePath)
	}
	var failed []string
	for _, r := range results {
		if r.Outcome == "failed" {
			failed = append(failed, r.Room.ID)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d rooms did not reach m.room.create: %s", len(failed), len(rooms), strings.Join(failed, ", "))
	}
	return nil
}

// warmDeviceID is the device the appservice logs each member in with for /messages.
const warmDeviceID = "TRANSITIONMATRIXWARM"

func printWarmTable(w io.Writer, results []cutover.WarmResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOM\tEVENTS\tPAGES\tDONE")
	var events, pages, done int
	for _, r := range results {
		d := "no"
		switch r.Outcome {
		case "done", "done earlier":
			d, done = "yes", done+1
		case "skipped":
			d = "skipped: " + r.Detail // named once, with its reason, in its own row
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", r.Room.ID, r.State.Events, r.State.Pages, d)
		events, pages = events+r.State.Events, pages+r.State.Pages
	}
	fmt.Fprintf(tw, "%d rooms\t%d\t%d\t%d done\n", len(results), events, pages, done)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if r.Detail != "" && r.Outcome != "skipped" {
			fmt.Fprintf(w, "room %s: %s\n", r.Room.ID, r.Detail)
		}
	}
	if events > 0 {
		fmt.Fprintln(w, "EVENTS: what the target returns of each room's history, its own join (from rejoin) included.")
	}
	return nil
}

// newWarmProgress reports rooms done and events received.
func newWarmProgress(w io.Writer, rooms int, every time.Duration, log *zap.Logger, wm *cutover.Warmer) *ticker {
	return startTicker(w, every, log, "warm progress", func(elapsed time.Duration, final bool) (string, []zap.Field) {
		n, done := wm.Events(), wm.RoomsDone()
		if final {
			return fmt.Sprintf("warm: %d/%d rooms done, %d events in %s", done, rooms, n, elapsed.Round(time.Second)), nil
		}
		rate := float64(n) / elapsed.Seconds()
		return fmt.Sprintf("warm: %d/%d rooms done, %d events, %.0f events/s", done, rooms, n, rate),
			[]zap.Field{zap.Int64("rooms_done", done), zap.Int("rooms", rooms), zap.Int64("events", n), zap.Float64("events_per_s", rate)}
	})
}
