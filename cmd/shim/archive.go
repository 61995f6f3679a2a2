package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/eventsource"
)

// defaultArchiveParallel is how many rooms are crawled at once: enough to hide latency, few
// enough to stay inside Synapse's default federation rate limits.
const defaultArchiveParallel = 4

// runArchive crawls every room with a joined local user into the event cache, resumably.
func runArchive(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "archive", "archive -config FILE [-j N] [-room ROOM_ID]... [-log-every DURATION]")
	configPath := fs.String("config", "", "the shim's configuration `file` (required)")
	parallel := fs.Int("j", defaultArchiveParallel, "rooms crawled at once")
	var only stringList
	fs.Var(&only, "room", "archive only this `room ID` (repeatable)")
	progressEvery := fs.Duration("log-every", 10*time.Second, "interval of progress log lines when stderr is not a terminal")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *parallel < 1 {
		return usagef("-j must be at least 1")
	}
	cfg, log, err := loadConfigAndLogger(env, *configPath, "synapse.url", "synapse.admin_token", "cache.path")
	if err != nil {
		return err
	}
	defer log.Sync()
	parts, err := openShim(cfg, log, nil)
	if err != nil {
		return exitWith(exitCannotRun, err) // e.g. the cache is held by a running serve
	}
	defer parts.Close()

	rooms, skipped, err := eventsource.RoomsToArchive(ctx, parts.client.Admin(), only)
	if err != nil {
		return err
	}
	prog := newProgress(env.Stderr, len(rooms), *progressEvery, log)
	defer prog.stop()
	sums := parts.source.Archive(ctx, rooms, *parallel, prog.add)
	prog.stop()
	if err := printArchiveSummary(env.Stdout, sums, skipped); err != nil {
		return err
	}
	failed, rejected := 0, int64(0)
	for _, s := range sums {
		if s.Err != nil || !s.Complete {
			failed++
		}
		rejected += s.Rejected
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: rerun the same command to continue where it stopped")
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d rooms are not complete; rerun to continue (what is archived is kept)", failed, len(sums))
	}
	if rejected > 0 {
		return fmt.Errorf("%d events failed signature verification and will not be served, so Conduit will not get them: "+
			"if %s signed them with a key it has since rotated, add that key to old_signing_keys in homeserver.yaml and point synapse_config at it "+
			"(shim check lists keys Synapse publishes that the configuration lacks); rerun to fetch them again", rejected, cfg.Identity.ServerName)
	}
	return nil
}

func printArchiveSummary(w io.Writer, sums []eventsource.RoomSummary, skipped []string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ROOM\tVERSION\tEVENTS\tVERIFIED\tREDACTED\tFAILED\tMISSING\tCOMPLETE\t")
	var total, verified, redacted, failed, missing int64
	complete := 0
	for _, s := range sums {
		done := "yes"
		if !s.Complete {
			done = "no"
		}
		if s.Err != nil {
			done = "error"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", s.RoomID, s.RoomVersion, s.Events, s.Verified, s.Redacted, s.Failed(), len(s.Missing), done)
		total, verified, redacted = total+s.Events, verified+s.Verified, redacted+s.Redacted
		failed, missing = failed+s.Failed(), missing+int64(len(s.Missing))
		if done == "yes" {
			complete++
		}
	}
	fmt.Fprintf(tw, "%d rooms\t-\t%d\t%d\t%d\t%d\t%d\t%d/%d\t\n", len(sums), total, verified, redacted, failed, missing, complete, len(sums))
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range sums {
		if s.Err != nil {
			fmt.Fprintf(w, "room %s: %v\n", s.RoomID, s.Err)
		}
	}
	for _, id := range skipped {
		fmt.Fprintf(w, "room %s: skipped, no local user is joined (Synapse will not serve its history over federation; the export keeps its state)\n", id)
	}
	return nil
}

// progress counts archived events for the progress line.
type progress struct {
	*ticker
	events atomic.Int64
}

func newProgress(w io.Writer, rooms int, every time.Duration, log *zap.Logger) *progress {
	p := &progress{}
	p.ticker = startTicker(w, every, log, "archive progress", func(elapsed time.Duration, final bool) (string, []zap.Field) {
		n := p.events.Load()
		if final {
			return fmt.Sprintf("archive: %d events in %s", n, elapsed.Round(time.Second)), nil
		}
		rate := float64(n) / elapsed.Seconds()
		return fmt.Sprintf("archive: %d rooms, %d events, %.0f events/s", rooms, n, rate),
			[]zap.Field{zap.Int("rooms", rooms), zap.Int64("events", n), zap.Float64("events_per_s", rate)}
	})
	return p
}

func (p *progress) add(_ string, n int) { p.events.Add(int64(n)) }

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
