package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
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
	retries := fs.Int("retries", 3, "retries of a failed /messages request (5xx or no answer), with backoff")
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
	store, err := openWarmState(*statePath, cfg.ServerName)
	if err != nil {
		return err
	}
	admin, err := newAdminClient(cfg)
	if err != nil {
		return err
	}
	rooms, err := migratingRooms(ctx, admin, cfg.ServerName)
	if err != nil {
		return err
	}
	wm := &warmer{target: newTargetClient(cfg), store: store, limit: *limit, stall: *stall, retries: *retries,
		backoff: time.Second, log: log}
	prog := newWarmProgress(env.Stderr, len(rooms), *progressEvery, log, wm)
	results := make([]warmResult, len(rooms))
	forEachParallel(len(rooms), *parallel, func(i int) {
		if rooms[i].Skip != "" {
			results[i] = warmResult{Room: rooms[i], Outcome: "skipped", Detail: rooms[i].Skip}
			return
		}
		results[i] = wm.warm(ctx, rooms[i])
	})
	prog.stop()
	if err := wm.target.logoutDevices(context.WithoutCancel(ctx)); err != nil {
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

// warmResult is what warm did with one room.
type warmResult struct {
	Room    migratingRoom
	State   warmRoomState
	Outcome string // "done", "done earlier", "skipped", "failed", "interrupted"
	Detail  string
}

// warmer pages rooms on the target.
type warmer struct {
	target  *targetClient
	store   *warmStore
	limit   int
	stall   int
	retries int
	backoff time.Duration
	log     *zap.Logger

	events   atomic.Int64 // events received in this run
	roomDone atomic.Int64
}

// warm pages one room from its stored token until m.room.create arrives.
func (wm *warmer) warm(ctx context.Context, room migratingRoom) warmResult {
	res := warmResult{Room: room}
	st := wm.store.get(room.ID)
	if st.Done {
		wm.roomDone.Add(1)
		res.State, res.Outcome = st, "done earlier"
		return res
	}
	member, err := wm.member(ctx, room, st.Member)
	if err != nil {
		res.State, res.Outcome, res.Detail = st, "failed", err.Error()
		return res
	}
	st.Member = member
	stalled := 0
	for {
		if ctx.Err() != nil {
			res.State, res.Outcome = st, "interrupted"
			return res
		}
		page, err := wm.page(ctx, member, room.ID, st.From)
		if err != nil {
			res.State = st
			if ctx.Err() != nil {
				res.Outcome = "interrupted"
				return res
			}
			res.Outcome, res.Detail = "failed", fmt.Sprintf("target error after %d pages: %v", st.Pages, err)
			return res
		}
		st.Pages++
		st.Events += len(page.Chunk)
		wm.events.Add(int64(len(page.Chunk)))
		if chunkHasCreate(page.Chunk) {
			st.Done = true
		} else if page.End == "" || len(page.Chunk) == 0 {
			stalled++
		} else {
			stalled = 0
			st.From = page.End
		}
		if err := wm.store.put(room.ID, st); err != nil {
			res.State, res.Outcome, res.Detail = st, "failed", "saving the resume state: "+err.Error()
			return res
		}
		if st.Done {
			wm.roomDone.Add(1)
			res.State, res.Outcome = st, "done"
			return res
		}
		if stalled >= wm.stall {
			res.State, res.Outcome = st, "failed"
			res.Detail = fmt.Sprintf("no progress after %d pages in a row: the target's backfill brings nothing more (%d events so far, m.room.create not reached; is `shim serve` running and complete for this room?)", stalled, st.Events)
			return res
		}
	}
}

// page asks one /messages page, retrying server errors and lost connections with backoff.
func (wm *warmer) page(ctx context.Context, member, roomID, from string) (*messagesPage, error) {
	wait := wm.backoff
	for attempt := 0; ; attempt++ {
		page, err := wm.target.messages(ctx, member, roomID, from, wm.limit)
		if err == nil {
			return page, nil
		}
		var te *targetError
		if attempt >= wm.retries || ctx.Err() != nil || (errors.As(err, &te) && te.Status < 500) {
			return nil, err
		}
		wm.log.Warn("retrying /messages", zap.String("room_id", roomID), zap.Int("attempt", attempt+1), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// member picks the local member to page as: the stored one, else the first the target has
// joined to the room.
func (wm *warmer) member(ctx context.Context, room migratingRoom, stored string) (string, error) {
	if stored != "" && slices.Contains(room.Members, stored) {
		return stored, nil
	}
	var errs []string
	for _, m := range room.Members {
		held, err := wm.target.joinedRooms(ctx, m)
		if err != nil {
			errs = append(errs, m+": "+err.Error())
			continue
		}
		if slices.Contains(held, room.ID) {
			return m, nil
		}
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("target error: no local member can read the room (%s)", strings.Join(errs, "; "))
	}
	return "", fmt.Errorf("the target does not hold the room: none of its %d local members is joined there (run shim rejoin)", len(room.Members))
}

// chunkHasCreate reports whether a page holds the room's m.room.create.
func chunkHasCreate(chunk []json.RawMessage) bool {
	for _, raw := range chunk {
		var ev struct {
			Type     string  `json:"type"`
			StateKey *string `json:"state_key"`
		}
		if json.Unmarshal(raw, &ev) == nil && ev.Type == "m.room.create" && ev.StateKey != nil && *ev.StateKey == "" {
			return true
		}
	}
	return false
}

func printWarmTable(w io.Writer, results []warmResult) error {
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

// warmRoomState is one room's resume state.
type warmRoomState struct {
	Member string `json:"member,omitempty"`
	From   string `json:"from,omitempty"` // the token the next page starts from ("" = the newest event)
	Events int    `json:"events"`
	Pages  int    `json:"pages"`
	Done   bool   `json:"done"`
}

// warmStateFile is the resume state file's content.
type warmStateFile struct {
	Format     int                       `json:"format"`
	ServerName string                    `json:"server_name"`
	Rooms      map[string]*warmRoomState `json:"rooms"`
}

// warmStore keeps the resume state, written atomically (0600) after every page.
type warmStore struct {
	path string
	mu   sync.Mutex
	data warmStateFile
}

func openWarmState(path, serverName string) (*warmStore, error) {
	s := &warmStore{path: path, data: warmStateFile{Format: 1, ServerName: serverName, Rooms: map[string]*warmRoomState{}}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("warm state: %w", err)
	}
	var f warmStateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("warm state %s is damaged (%v): remove it to start over", path, err)
	}
	if f.Format != 1 || f.ServerName != serverName {
		return nil, fmt.Errorf("warm state %s is for server %q (format %d), not %q: remove it or pass another -state", path, f.ServerName, f.Format, serverName)
	}
	if f.Rooms == nil {
		f.Rooms = map[string]*warmRoomState{}
	}
	s.data = f
	return s, nil
}

func (s *warmStore) get(roomID string) warmRoomState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.data.Rooms[roomID]; st != nil {
		return *st
	}
	return warmRoomState{}
}

func (s *warmStore) put(roomID string, st warmRoomState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data.Rooms[roomID] = &st
	b, err := json.MarshalIndent(s.data, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.path)
}

// newWarmProgress reports rooms done and events received.
func newWarmProgress(w io.Writer, rooms int, every time.Duration, log *zap.Logger, wm *warmer) *ticker {
	return startTicker(w, every, log, "warm progress", func(elapsed time.Duration, final bool) (string, []zap.Field) {
		n, done := wm.events.Load(), wm.roomDone.Load()
		if final {
			return fmt.Sprintf("warm: %d/%d rooms done, %d events in %s", done, rooms, n, elapsed.Round(time.Second)), nil
		}
		rate := float64(n) / elapsed.Seconds()
		return fmt.Sprintf("warm: %d/%d rooms done, %d events, %.0f events/s", done, rooms, n, rate),
			[]zap.Field{zap.Int64("rooms_done", done), zap.Int("rooms", rooms), zap.Int64("events", n), zap.Float64("events_per_s", rate)}
	})
}
