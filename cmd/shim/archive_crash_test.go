package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

const (
	// archiveCrashChildEnv names the configuration TestArchiveCrashChild archives with.
	archiveCrashChildEnv = "SHIM_ARCHIVE_CRASH_CHILD"
	// archiveCrashParallelEnv is the child's -j.
	archiveCrashParallelEnv = "SHIM_ARCHIVE_CRASH_PARALLEL"
	// archiveCrashSeedEnv overrides the seed of the kill points, to replay a failure.
	archiveCrashSeedEnv = "SHIM_ARCHIVE_CRASH_SEED"
)

// TestArchiveCrashChild is the child side of TestArchiveCrashResume: it runs `shim archive` and
// exits with its status, unless the parent kills it first.
func TestArchiveCrashChild(t *testing.T) {
	cfg := os.Getenv(archiveCrashChildEnv)
	if cfg == "" {
		t.Skip("only runs as TestArchiveCrashResume's child")
	}
	args := []string{"archive", "-config", cfg, "-j", os.Getenv(archiveCrashParallelEnv)}
	os.Exit(Run(context.Background(), args, &Env{Stdout: os.Stdout, Stderr: os.Stderr}))
}

// TestArchiveCrashResume SIGKILLs `shim archive` at random points of its crawl (each kill when the
// simulated Synapse receives a chosen request), reruns it until it completes, and checks that the
// cache ends identical to the one an uninterrupted run writes: rooms, frontier, every event.
func TestArchiveCrashResume(t *testing.T) {
	if os.Getenv(archiveCrashChildEnv) != "" {
		t.Skip("child")
	}
	opts := world.Options{Seed: 41, MessagesPerRoom: 60, OldKeyEvents: 6}
	minKills := 5
	if !testing.Short() {
		opts.MessagesPerRoom, minKills = 500, 10
	}
	seed := uint64(20260419)
	if s := os.Getenv(archiveCrashSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", archiveCrashSeedEnv, s, err)
		}
		seed = v
	}
	t.Logf("kill points from seed %d (replay with %s=%d)", seed, archiveCrashSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0x617263))

	started := time.Now()
	w, err := world.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	checkCrashWorld(t, w)
	sim := synapsesim.New(synapsesim.Options{World: w})
	t.Logf("world: %d rooms, %d events, generated in %s", len(w.Rooms), w.EventCount(), time.Since(started).Round(time.Millisecond))

	// Reference: one uninterrupted run, in this process.
	dirA := t.TempDir()
	ref := newKillSwitch(sim.Handler(), 0, nil)
	srvA := httptest.NewServer(ref)
	cfgA, _, err := writeDemoConfig(dirA, w, srvA.URL, sim.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	var outA bytes.Buffer
	start := time.Now()
	code := Run(context.Background(), []string{"archive", "-config", cfgA}, &Env{Stdout: &outA, Stderr: &outA})
	srvA.Close()
	if code != 0 {
		t.Fatalf("reference archive: exit %d\n%s", code, outA.String())
	}
	total, beforeFederation := ref.served()
	t.Logf("reference run: %d requests to Synapse (%d before the first federation request) in %s",
		total, beforeFederation, time.Since(start).Round(time.Millisecond))
	cacheA := openCrashCache(t, filepath.Join(dirA, "cache.db"))
	statsA, err := cacheA.Stats()
	if err != nil {
		t.Fatal(err)
	}
	cacheA.Close()

	// Crash runs into cache B: each child runs against its own listener, so requests a killed
	// child left in flight never count towards the next kill point.
	dirB := t.TempDir()
	pathB := filepath.Join(dirB, "cache.db")
	kills := 0
	for round := 0; kills < minKills; round++ {
		eventsB := int64(0)
		if round > 0 {
			c := openCrashCache(t, pathB)
			st, err := c.Stats()
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			eventsB = st.Events
		}
		// Requests a rerun still needs: the listing before the crawl again, then the share of
		// the crawl the stored events do not cover yet. Kill well inside that range.
		remaining := beforeFederation + int(float64(total-beforeFederation)*(1-float64(eventsB)/float64(statsA.Events)))
		var killAt int
		switch {
		case round == 0: // before the first commit: while the rooms are being listed
			killAt = 1 + rng.IntN(beforeFederation)
		case round%2 == 1: // anywhere in what is left
			killAt = 1 + rng.IntN(max(1, remaining*3/4))
		default: // late: the last part of what is left
			killAt = remaining/2 + rng.IntN(max(1, remaining/4))
		}
		parallel := 1 + rng.IntN(defaultArchiveParallel) // the cache must not depend on it either
		res := runArchiveChild(t, sim, w, dirB, killAt, parallel)
		if !res.killed {
			// The estimate was too high (or the crawl lost work): compare what the run left,
			// which names any difference, and report the missing kills after that.
			t.Logf("round %d: the child (-j %d) finished, exit %d, after %d requests, before request %d of an estimated %d",
				round, parallel, res.exit, res.requests, killAt, remaining)
			if res.exit != 0 {
				t.Fatalf("round %d: archive failed; output:\n%s", round, res.output)
			}
			break
		}
		c := openCrashCache(t, pathB)
		if err := c.CheckIntegrity(); err != nil {
			t.Fatalf("round %d: after SIGKILL at request %d the cache is damaged: %v", round, killAt, err)
		}
		st, err := c.Stats()
		if err != nil {
			t.Fatal(err)
		}
		incomplete := st.Events < statsA.Events || st.Frontier > 0 || !allComplete(t, c)
		c.Close()
		if !incomplete {
			t.Logf("round %d: killed at request %d (%s) after the crawl had completed", round, killAt, res.killedOn)
			break
		}
		kills++
		t.Logf("round %d: -j %d, SIGKILL at request %d of ~%d left (%s) after %s; cache holds %d of %d events, frontier %d",
			round, parallel, killAt, remaining, res.killedOn, res.took.Round(time.Millisecond), st.Events, statsA.Events, st.Frontier)
	}

	// The final rerun is not interrupted and must complete.
	res := runArchiveChild(t, sim, w, dirB, 0, defaultArchiveParallel)
	if res.killed || res.exit != 0 {
		t.Fatalf("final rerun: exit %d (killed %v); output:\n%s", res.exit, res.killed, res.output)
	}
	t.Logf("final rerun: exit 0 after %d requests in %s", res.requests, res.took.Round(time.Millisecond))

	a := openCrashCache(t, filepath.Join(dirA, "cache.db"))
	defer a.Close()
	b := openCrashCache(t, pathB)
	defer b.Close()
	compareCaches(t, a, b)
	if kills < minKills {
		t.Fatalf("only %d of %d kills landed mid-crawl: the archive completed sooner than estimated (seed %d)", kills, minKills, seed)
	}
	if !t.Failed() {
		t.Logf("%d kills mid-crawl; the resumed cache equals the uninterrupted one (%d events, %d rooms); %s in all",
			kills, statsA.Events, statsA.Rooms, time.Since(started).Round(time.Millisecond))
	}
}

// checkCrashWorld checks the world holds the rooms the test is meant to cover.
func checkCrashWorld(t *testing.T, w *world.World) {
	t.Helper()
	kinds := map[string]bool{}
	for _, r := range w.Rooms {
		kinds[r.Kind] = true
	}
	for _, k := range []string{world.KindOrdinary, world.KindV1, world.KindRemoteMembers, world.KindAllLeft} {
		if !kinds[k] {
			t.Fatalf("the world has no %s room", k)
		}
	}
	if len(w.OldKeys) == 0 {
		t.Fatal("the world has no events signed with an old key")
	}
}

// childResult is how one child run ended.
type childResult struct {
	killed   bool   // SIGKILLed by the parent
	killedOn string // the request that triggered the kill
	exit     int
	requests int
	took     time.Duration
	output   string
}

// runArchiveChild runs `shim archive` in a child process on the cache in dir, against a fresh
// listener over sim, and SIGKILLs it when that listener receives request killAt (0: never).
func runArchiveChild(t *testing.T, sim *synapsesim.Server, w *world.World, dir string, killAt, parallel int) childResult {
	t.Helper()
	var (
		mu      sync.Mutex
		proc    *os.Process
		started = make(chan struct{})
	)
	ks := newKillSwitch(sim.Handler(), killAt, func() {
		<-started
		mu.Lock()
		defer mu.Unlock()
		proc.Kill()
	})
	srv := httptest.NewServer(ks)
	defer srv.Close()
	cfg, _, err := writeDemoConfig(dir, w, srv.URL, sim.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestArchiveCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), archiveCrashChildEnv+"="+cfg, archiveCrashParallelEnv+"="+strconv.Itoa(parallel))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		close(started)
		t.Fatal(err)
	}
	mu.Lock()
	proc = cmd.Process
	mu.Unlock()
	close(started)
	err = cmd.Wait()
	res := childResult{took: time.Since(start), output: out.String()}
	res.requests, _ = ks.served()
	res.killedOn = ks.killedOn()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		res.killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
		res.exit = ee.ExitCode()
		if res.killed && res.killedOn == "" {
			t.Fatalf("the child died of SIGKILL the test did not send; output:\n%s", res.output)
		}
	default:
		t.Fatal(err)
	}
	return res
}

// killSwitch counts the requests it passes on and calls kill, before serving it, on request at.
type killSwitch struct {
	next http.Handler
	at   int
	kill func()

	mu             sync.Mutex
	n              int
	firstFederated int // requests served before the first federation (or key) request
	trigger        string
}

func newKillSwitch(next http.Handler, at int, kill func()) *killSwitch {
	return &killSwitch{next: next, at: at, kill: kill, firstFederated: -1}
}

func (k *killSwitch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.n++
	n := k.n
	if k.firstFederated < 0 && !strings.HasPrefix(r.URL.Path, "/_synapse/admin/") {
		k.firstFederated = n - 1
	}
	fire := n == k.at
	if fire {
		k.trigger = r.Method + " " + r.URL.Path
	}
	k.mu.Unlock()
	if fire {
		k.kill()
		http.Error(w, "killed", http.StatusServiceUnavailable)
		return
	}
	k.next.ServeHTTP(w, r)
}

// served returns the requests received and how many came before the first federation one.
func (k *killSwitch) served() (total, beforeFederation int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n, k.firstFederated
}

func (k *killSwitch) killedOn() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.trigger
}

func openCrashCache(t *testing.T, path string) *eventcache.Cache {
	t.Helper()
	c, err := eventcache.Open(path, eventcache.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return c
}

// allComplete reports whether every room the cache knows is marked complete.
func allComplete(t *testing.T, c *eventcache.Cache) bool {
	t.Helper()
	rooms, err := c.Rooms()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rooms {
		if !m.Complete {
			return false
		}
	}
	return len(rooms) > 0
}

// compareCaches fails the test on every difference between the caches a and b: stats, room
// metas, frontiers and every event field, naming the room, event and field.
func compareCaches(t *testing.T, a, b *eventcache.Cache) {
	t.Helper()
	for name, c := range map[string]*eventcache.Cache{"uninterrupted": a, "resumed": b} {
		if err := c.CheckIntegrity(); err != nil {
			t.Errorf("%s cache: %v", name, err)
		}
	}
	sa, err := a.Stats()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if sa.Events != sb.Events || sa.Rooms != sb.Rooms || sa.Frontier != sb.Frontier {
		t.Errorf("stats: uninterrupted %d events, %d rooms, frontier %d; resumed %d, %d, %d",
			sa.Events, sa.Rooms, sa.Frontier, sb.Events, sb.Rooms, sb.Frontier)
	}
	ra, err := a.Rooms()
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Rooms()
	if err != nil {
		t.Fatal(err)
	}
	metas := map[string]eventcache.RoomMeta{}
	for _, m := range rb {
		metas[m.RoomID] = m
	}
	if len(ra) != len(rb) {
		t.Errorf("rooms: uninterrupted %d, resumed %d", len(ra), len(rb))
	}
	if len(ra) == 0 {
		t.Fatal("the uninterrupted archive stored no room")
	}
	for _, ma := range ra {
		mb, ok := metas[ma.RoomID]
		if !ok {
			t.Errorf("room %s: missing from the resumed cache", ma.RoomID)
			continue
		}
		if !ma.Complete || ma.Frontier != 0 {
			t.Errorf("room %s: the uninterrupted archive left it incomplete (frontier %d)", ma.RoomID, ma.Frontier)
		}
		if ma.RoomVersion != mb.RoomVersion || ma.Complete != mb.Complete || ma.Events != mb.Events ||
			ma.Frontier != mb.Frontier || !bytes.Equal(ma.Progress, mb.Progress) {
			t.Errorf("room %s meta: uninterrupted {version %q complete %v events %d frontier %d progress %s}, resumed {%q %v %d %d %s}",
				ma.RoomID, ma.RoomVersion, ma.Complete, ma.Events, ma.Frontier, ma.Progress,
				mb.RoomVersion, mb.Complete, mb.Events, mb.Frontier, mb.Progress)
		}
		fa, err := a.Frontier(ma.RoomID, "", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		fb, err := b.Frontier(ma.RoomID, "", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(fa, fb) {
			t.Errorf("room %s frontier: uninterrupted %v, resumed %v", ma.RoomID, fa, fb)
		}
		compareRoomEvents(t, ma.RoomID, roomEvents(t, a, ma.RoomID), roomEvents(t, b, ma.RoomID))
	}
}

func roomEvents(t *testing.T, c *eventcache.Cache, room string) []eventcache.Event {
	t.Helper()
	var out []eventcache.Event
	if err := c.RoomEvents(room, func(e eventcache.Event) bool { out = append(out, e); return true }); err != nil {
		t.Fatalf("room %s: %v", room, err)
	}
	return out
}

// compareRoomEvents reports each event stored in one cache only and each field that differs.
func compareRoomEvents(t *testing.T, room string, a, b []eventcache.Event) {
	t.Helper()
	byID := map[string]eventcache.Event{}
	for _, e := range b {
		byID[e.ID] = e
	}
	problems := 0
	report := func(format string, args ...any) {
		problems++
		if problems <= 20 {
			t.Errorf("room %s: "+format, append([]any{room}, args...)...)
		}
	}
	for _, ea := range a {
		eb, ok := byID[ea.ID]
		if !ok {
			report("event %s (depth %d, %s) only in the uninterrupted cache", ea.ID, ea.Depth, ea.Status)
			continue
		}
		delete(byID, ea.ID)
		for _, d := range eventDiffs(ea, eb) {
			report("event %s: %s", ea.ID, d)
		}
	}
	for id, eb := range byID {
		report("event %s (depth %d, %s) only in the resumed cache", id, eb.Depth, eb.Status)
	}
	if problems > 20 {
		t.Errorf("room %s: %d differences in all", room, problems)
	}
}

// eventDiffs names the fields in which two stored copies of an event differ.
func eventDiffs(a, b eventcache.Event) []string {
	var out []string
	diff := func(field string, x, y any) {
		out = append(out, fmt.Sprintf("%s: uninterrupted %v, resumed %v", field, x, y))
	}
	if a.RoomID != b.RoomID {
		diff("room", a.RoomID, b.RoomID)
	}
	if a.RoomVersion != b.RoomVersion {
		diff("room version", a.RoomVersion, b.RoomVersion)
	}
	if a.Status != b.Status {
		diff("status", a.Status, b.Status)
	}
	if a.Depth != b.Depth {
		diff("depth", a.Depth, b.Depth)
	}
	if a.Stream != b.Stream {
		diff("stream", a.Stream, b.Stream)
	}
	if !slices.Equal(a.PrevEvents, b.PrevEvents) {
		diff("prev_events", a.PrevEvents, b.PrevEvents)
	}
	if !slices.Equal(a.AuthEvents, b.AuthEvents) {
		diff("auth_events", a.AuthEvents, b.AuthEvents)
	}
	if a.Type != b.Type {
		diff("type", a.Type, b.Type)
	}
	if (a.StateKey == nil) != (b.StateKey == nil) || (a.StateKey != nil && *a.StateKey != *b.StateKey) {
		diff("state_key", fmtStateKey(a.StateKey), fmtStateKey(b.StateKey))
	}
	if a.OriginServerTS != b.OriginServerTS {
		diff("origin_server_ts", a.OriginServerTS, b.OriginServerTS)
	}
	if !bytes.Equal(a.JSON, b.JSON) {
		diff("JSON", fmt.Sprintf("%d bytes", len(a.JSON)), fmt.Sprintf("%d bytes", len(b.JSON)))
	}
	return out
}

func fmtStateKey(k *string) string {
	if k == nil {
		return "none"
	}
	return strconv.Quote(*k)
}
