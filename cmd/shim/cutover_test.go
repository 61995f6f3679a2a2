package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
	"github.com/transition-matrix/transition-matrix/cutover"
	"github.com/transition-matrix/transition-matrix/internal/conduitsim"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/verify"
)

// cutoverBed is a simulated Synapse, a shim (the real `shim serve`, or a WorldPeer standing in for
// it) and a simulated patched Conduit whose requests for the own name go to that shim.
type cutoverBed struct {
	w       *world.World
	syn     *synapsesim.Server
	target  *conduitsim.Server
	cfgPath string
	dir     string
	// versionsWhole are the room versions checkWhole found whole on the target.
	versionsWhole map[string]bool
}

const testASToken = "as_token_cutover"

func newCutoverBed(t *testing.T, opts world.Options, realShim bool) *cutoverBed {
	t.Helper()
	w, err := world.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	b := &cutoverBed{w: w, syn: synapsesim.Start(t, synapsesim.Options{World: w}), dir: t.TempDir(), versionsWhole: map[string]bool{}}
	b.cfgPath, _, err = writeDemoConfig(b.dir, w, b.syn.URL, b.syn.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	var shimURL string
	if realShim {
		shimURL = startServe(t, b.cfgPath)
	} else {
		_, shimURL = conduitsim.StartWorldPeer(t, w, b.syn.Identity())
	}
	b.target = conduitsim.Start(t, conduitsim.Options{World: w, ShimURL: shimURL, ASToken: testASToken})
	addTarget(t, b.cfgPath, b.target.URL)
	return b
}

// appendConfig appends YAML text to the shim config file at path.
func appendConfig(t testing.TB, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// addTarget writes testASToken to as_token beside the config at cfgPath and points the config's
// target at url with it.
func addTarget(t testing.TB, cfgPath, url string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfgPath), "as_token"), []byte(testASToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	appendConfig(t, cfgPath, "target:\n  url: "+url+"\n  token_file: as_token\n")
}

// startServe runs `shim serve` until the test ends and returns its URL once it listens.
func startServe(t testing.TB, cfgPath string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan int, 1)
	env := &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(string) string { return "" },
		Ready: func(what, a string) {
			if what == "federation" {
				addr <- a
			}
		}}
	go func() { done <- Run(ctx, []string{"serve", "-config", cfgPath}, env) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addr:
		return "http://" + a
	case code := <-done:
		t.Fatalf("serve exited early with %d", code)
		return ""
	}
}

// run runs a shim command in-process and returns its exit status and output.
func (b *cutoverBed) run(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Run(ctx, args, &Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
	return code, out.String(), errOut.String()
}

// hostable are the rooms a Conduit can take over: a local user joined, version 3 or later.
func (b *cutoverBed) hostable() []*world.Room {
	var out []*world.Room
	for _, r := range b.w.Rooms {
		if r.LocalJoinedNow() && r.Version != "1" && r.Version != "2" {
			out = append(out, r)
		}
	}
	return out
}

// checkWhole asserts the target holds every hostable room with its whole history: the world's
// event IDs plus its own join, down to m.room.create.
func (b *cutoverBed) checkWhole(t *testing.T) {
	t.Helper()
	for _, r := range b.hostable() {
		b.versionsWhole[r.Version] = true
		info, ok := b.target.Room(r.ID)
		if !ok {
			t.Fatalf("room %s (%s) not held by the target", r.ID, r.Kind)
		}
		if !info.ReachedCreate {
			t.Fatalf("room %s (%s): m.room.create not reached (%d events)", r.ID, r.Kind, len(info.Timeline))
		}
		got := slices.Clone(info.Timeline)
		slices.Sort(got)
		var want []string
		for _, e := range r.Events {
			want = append(want, e.ID)
		}
		want = append(want, info.Timeline[0]) // the target's join
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("room %s (%s): the target holds %d events, the world %d (+ the join)", r.ID, r.Kind, len(got), len(want)-1)
		}
	}
}

// TestRejoinThenWarmBringsEveryRoomWhole runs rejoin then warm with a WorldPeer as the shim.
func TestRejoinThenWarmBringsEveryRoomWhole(t *testing.T) { testRejoinThenWarm(t, false) }

// TestRejoinThenWarmThroughTheShim is the acceptance: simulated Synapse, `shim serve`, simulated
// patched Conduit; rejoin then warm leave every room Conduit can host whole on the target.
func TestRejoinThenWarmThroughTheShim(t *testing.T) { testRejoinThenWarm(t, true) }

func testRejoinThenWarm(t *testing.T, realShim bool) {
	b := newCutoverBed(t, world.Options{Seed: 31, MessagesPerRoom: 130, V12Rooms: 1}, realShim)
	ctx := context.Background()
	code, out, errOut := b.run(ctx, "rejoin", "-config", b.cfgPath)
	if code != 0 {
		t.Fatalf("rejoin: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, r := range b.w.Rooms {
		switch {
		case r.Version == "1":
			if !strings.Contains(out, r.ID) || !strings.Contains(out, "room version 1 cannot be hosted by Conduit") {
				t.Errorf("rejoin does not report the v1 room:\n%s", out)
			}
		case !r.LocalJoinedNow():
			if !strings.Contains(out, "no local user is joined") {
				t.Errorf("rejoin does not report the room without local members:\n%s", out)
			}
		}
	}
	code, out, errOut = b.run(ctx, "warm", "-config", b.cfgPath, "-j", "2")
	if code != 0 {
		t.Fatalf("warm: exit %d\n%s\n%s", code, out, errOut)
	}
	b.checkWhole(t)
	if !b.versionsWhole["12"] {
		t.Error("no room of version 12 was checked")
	}
	// Each room warm skips is named once, with its reason.
	for _, r := range b.w.Rooms {
		if r.Version == "1" || !r.LocalJoinedNow() {
			if n := strings.Count(out+errOut, r.ID); n != 1 || !strings.Contains(out, r.ID+"  ") {
				t.Errorf("warm names the skipped room %s %d times, want once in its row:\n%s", r.ID, n, out)
			}
		}
	}

	// A rerun of both is a no-op: no join, no /messages.
	before := b.target.Requests()
	code, out, _ = b.run(ctx, "rejoin", "-config", b.cfgPath)
	if code != 0 || !strings.Contains(out, "already held") || strings.Contains(out, "  joined") {
		t.Fatalf("rejoin rerun: exit %d\n%s", code, out)
	}
	if code, out, errOut = b.run(ctx, "warm", "-config", b.cfgPath); code != 0 {
		t.Fatalf("warm rerun: exit %d\n%s\n%s", code, out, errOut)
	}
	after := b.target.Requests()
	if after["client.join"] != before["client.join"] || after["client.messages"] != before["client.messages"] || after["fed.backfill"] != before["fed.backfill"] {
		t.Fatalf("the reruns were not no-ops: %v → %v", before, after)
	}
}

func TestWarmResumesAfterInterruption(t *testing.T) {
	opts := world.Options{Seed: 32, MessagesPerRoom: 150, NoV1Room: true}
	ctx := context.Background()

	// Reference: an uninterrupted run, for the pages each room takes.
	ref := newCutoverBed(t, opts, false)
	if code, out, errOut := ref.run(ctx, "rejoin", "-config", ref.cfgPath); code != 0 {
		t.Fatalf("rejoin: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := ref.run(ctx, "warm", "-config", ref.cfgPath, "-j", "1"); code != 0 {
		t.Fatalf("warm: %d\n%s%s", code, out, errOut)
	}
	refState := readWarmState(t, ref.cfgPath)

	b := newCutoverBed(t, opts, false)
	if code, out, errOut := b.run(ctx, "rejoin", "-config", b.cfgPath); code != 0 {
		t.Fatalf("rejoin: %d\n%s%s", code, out, errOut)
	}
	total := ref.target.Requests()["client.messages"]
	stopCtx, stop := context.WithCancel(ctx)
	var served atomic.Int64
	b.target.Faults().OnMessages(func(string) {
		if served.Add(1) == int64(total/2) {
			stop()
		}
	})
	code, out, errOut := b.run(stopCtx, "warm", "-config", b.cfgPath, "-j", "1")
	if code == 0 || !strings.Contains(errOut, "interrupted: rerun") {
		t.Fatalf("interrupted warm: exit %d\n%s%s", code, out, errOut)
	}
	b.target.Faults().OnMessages(nil)
	st, err := os.Stat(b.cfgPath[:len(b.cfgPath)-len("shim.yaml")] + "cache.db.warm.json")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v", err, st.Mode())
	}
	half := readWarmState(t, b.cfgPath)
	doneHalf := 0
	for _, r := range half.Rooms {
		if r.Done {
			doneHalf++
		}
	}
	if doneHalf == 0 || doneHalf == len(refState.Rooms) {
		t.Fatalf("interrupted at %d of %d /messages: %d rooms done of %d", total/2, total, doneHalf, len(refState.Rooms))
	}
	if code, out, errOut := b.run(ctx, "warm", "-config", b.cfgPath, "-j", "1"); code != 0 {
		t.Fatalf("rerun: %d\n%s%s", code, out, errOut)
	}
	b.checkWhole(t)
	final := readWarmState(t, b.cfgPath)
	for id, r := range refState.Rooms {
		if got := final.Rooms[id]; got == nil || !got.Done || got.Pages != r.Pages || got.Events != r.Events {
			t.Errorf("room %s: resumed state %+v, uninterrupted %+v (a resume must continue from the token)", id, got, r)
		}
	}
}

func readWarmState(t *testing.T, cfgPath string) cutover.WarmStateFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(filepath.Dir(cfgPath), "cache.db.warm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f cutover.WarmStateFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRejoinAndWarmNameFailures(t *testing.T) {
	b := newCutoverBed(t, world.Options{Seed: 33, MessagesPerRoom: 60, NoV1Room: true}, false)
	rooms := b.hostable()
	if len(rooms) < 3 {
		t.Fatalf("%d hostable rooms", len(rooms))
	}
	notJoined, cut, failing := rooms[0], rooms[1], rooms[2]
	b.target.Faults().FailJoin(notJoined.ID)
	b.target.Faults().CutHistory(cut.ID, 30)
	b.target.Faults().FailMessages(failing.ID, -1)
	ctx := context.Background()

	code, out, errOut := b.run(ctx, "rejoin", "-config", b.cfgPath)
	if code != 1 || !strings.Contains(errOut, "1 of") || !strings.Contains(errOut, notJoined.ID) ||
		!strings.Contains(out, "failed: target: POST /join/{roomIdOrAlias}: 502 M_UNKNOWN: No server available to assist in joining.") {
		t.Fatalf("rejoin with a failing room: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = b.run(ctx, "warm", "-config", b.cfgPath, "-retries", "0")
	if code != 1 {
		t.Fatalf("warm: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"3 of ", notJoined.ID, cut.ID, failing.ID,
		"room " + notJoined.ID + ": the target does not hold the room",
		"room " + cut.ID + ": no progress after 3 pages in a row",
		"room " + failing.ID + ": failed after 0 pages: target: GET /rooms/{roomId}/messages: 500 M_UNKNOWN",
	} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("warm output lacks %q:\n%s%s", want, out, errOut)
		}
	}
	for _, r := range rooms[3:] {
		if info, ok := b.target.Room(r.ID); !ok || !info.ReachedCreate {
			t.Errorf("room %s: not whole although nothing failed there", r.ID)
		}
	}

	// Once the causes are gone, reruns finish the rooms that failed.
	b.target.Faults().Clear()
	if code, out, errOut = b.run(ctx, "rejoin", "-config", b.cfgPath); code != 0 {
		t.Fatalf("rejoin rerun: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = b.run(ctx, "warm", "-config", b.cfgPath); code != 0 {
		t.Fatalf("warm rerun: %d\n%s%s", code, out, errOut)
	}
	b.checkWhole(t)
}

func TestRejoinWarmUsage(t *testing.T) {
	b := newCutoverBed(t, world.Options{Seed: 34, Rooms: -1, MessagesPerRoom: 5, NoV1Room: true}, false)
	ctx := context.Background()
	if code, _, errOut := b.run(ctx, "warm", "-config", b.cfgPath, "-target", "conduit:6167"); code != 2 || !strings.Contains(errOut, "-target: want an http") {
		t.Fatalf("bad -target: %d %s", code, errOut)
	}
	if code, _, errOut := b.run(ctx, "rejoin", "-config", b.cfgPath, "-j", "0"); code != 2 || !strings.Contains(errOut, "-j must be at least 1") {
		t.Fatalf("-j 0: %d %s", code, errOut)
	}
	noTarget := filepath.Join(b.dir, "plain.yaml")
	data, _ := os.ReadFile(b.cfgPath)
	plain := string(data[:bytes.Index(data, []byte("target:"))])
	if err := os.WriteFile(noTarget, []byte(plain), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := b.run(ctx, "rejoin", "-config", noTarget)
	if code != 2 || !strings.Contains(errOut, "target.url (or the -target flag): required") || !strings.Contains(errOut, "target.token (or target.token_file): required") {
		t.Fatalf("no target: %d %s", code, errOut)
	}
	// -target overrides target.url: pointing at the wrong place names the failure and leaks no token.
	code, out, errOut := b.run(ctx, "rejoin", "-config", b.cfgPath, "-target", b.syn.URL)
	if code != 1 || strings.Contains(out+errOut, testASToken) {
		t.Fatalf("wrong target: %d\n%s%s", code, out, errOut)
	}
	// A damaged state file is named, not overwritten.
	statePath := filepath.Join(b.dir, "state.json")
	os.WriteFile(statePath, []byte("{not json"), 0o600)
	code, _, errOut = b.run(ctx, "warm", "-config", b.cfgPath, "-state", statePath)
	if code != 1 || !strings.Contains(errOut, "is damaged") {
		t.Fatalf("damaged state: %d %s", code, errOut)
	}
	if data, _ := os.ReadFile(statePath); string(data) != "{not json" {
		t.Fatal("the damaged state file was overwritten")
	}
}

// hidingUsers is the imported database as the simulated Conduit reads it, with one device of one
// user hidden on demand: a user whose devices differ from the export.
type hidingUsers struct {
	conduitsim.UserData
	mu           sync.Mutex
	user, device string
}

func (h *hidingUsers) hide(user, device string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.user, h.device = user, device
}

func (h *hidingUsers) Devices(user string) ([]conduit.Device, error) {
	devs, err := h.UserData.Devices(user)
	h.mu.Lock()
	defer h.mu.Unlock()
	if user == h.user {
		devs = slices.DeleteFunc(devs, func(d conduit.Device) bool { return d.ID == h.device })
	}
	return devs, err
}

// startStoppableServe runs `shim serve` and returns its URL and a function that stops it.
func startStoppableServe(t *testing.T, cfgPath string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan int, 1)
	env := &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(string) string { return "" },
		Ready: func(what, a string) {
			if what == "federation" {
				addr <- a
			}
		}}
	go func() { done <- Run(ctx, []string{"serve", "-config", cfgPath}, env) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	select {
	case a := <-addr:
		return "http://" + a, stop
	case code := <-done:
		t.Fatalf("serve exited early with %d", code)
		return "", nil
	}
}

// TestVerifyAfterCutover is issue 7's acceptance for verify: export, import, archive, serve,
// rejoin and warm against the simulated Synapse and Conduit; with one room's history cut short
// and one user's device missing, verify names both, with the missing count, and exits 1; once
// warm has finished the room and the device is back, verify says everything arrived and exits 0.
func TestVerifyAfterCutover(t *testing.T) {
	if testing.Short() {
		t.Skip("export, import, archive, serve, rejoin, warm and four verifications: about 5 s, 25 s with -race")
	}
	w, err := world.Generate(world.Options{Seed: 41, MessagesPerRoom: 60, Users: 2, V12Rooms: 1})
	if err != nil {
		t.Fatal(err)
	}
	syn := synapsesim.Start(t, synapsesim.Options{World: w})
	dir := t.TempDir()
	cfgPath, _, err := writeDemoConfig(dir, w, syn.URL, syn.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		code := Run(ctx, args, &Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }})
		if want >= 0 && code != want {
			t.Fatalf("shim %s: exit %d, want %d\n%s\n%s", strings.Join(args, " "), code, want, out.String(), errOut.String())
		}
		return out.String()
	}
	exportDir, dbDir := filepath.Join(dir, "export"), conduittest.FreshDB(t, w.ServerName, conduit.Version010)
	run(0, "export", "-config", cfgPath, "-out", exportDir)
	run(0, "import", "conduit", "-config", cfgPath, "-export", exportDir, "-db", dbDir)
	run(0, "archive", "-config", cfgPath)
	shimURL, stopServe := startStoppableServe(t, cfgPath)

	db, err := conduit.Open(dbDir, conduit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	users := &hidingUsers{UserData: db}
	target := conduitsim.Start(t, conduitsim.Options{World: w, ShimURL: shimURL, ASToken: testASToken, UserData: users})
	addTarget(t, cfgPath, target.URL)

	var cut *world.Room // the room of version 12: its create event is named by the room ID
	for _, r := range w.RoomsOfKind(world.KindOrdinary) {
		if r.Version == "12" {
			cut = r
		}
	}
	if cut == nil {
		t.Fatal("the world has no room of version 12")
	}
	var victim *world.User
	for _, u := range w.Users {
		if !u.Deactivated && len(u.Devices) > 0 && (victim == nil || len(u.Devices) > len(victim.Devices)) {
			victim = u
		}
	}
	const kept = 10
	target.Faults().CutHistory(cut.ID, kept)
	users.hide(victim.ID, victim.Devices[0].ID)
	run(0, "rejoin", "-config", cfgPath)
	run(1, "warm", "-config", cfgPath) // the cut room makes no progress

	// Synapse is up and serve holds the cache: verify reads the rooms again from Synapse.
	outDir := filepath.Join(dir, "report-cut")
	out := run(1, "verify", "-config", cfgPath, "-export", exportDir, "-out", outDir)
	missing := len(cut.Events) - kept
	for _, want := range []string{
		fmt.Sprintf("room %s: missing, %d of %d events missing", cut.ID, missing, len(cut.Events)),
		fmt.Sprintf("user %s: missing: device %s: missing", victim.ID, victim.Devices[0].ID),
		"Something is missing: 1 room and 1 user with problems",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	var rep verify.Report
	data, err := os.ReadFile(filepath.Join(outDir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Result != verify.ResultMissing || rep.Summary.RoomsMissing != 1 || rep.Summary.EventsMissing != missing || rep.Summary.UsersMissing != 1 {
		t.Errorf("report.json summary: %s %+v", rep.Result, rep.Summary)
	}
	for _, r := range rep.Rooms {
		if r.RoomID == cut.ID && (r.Arrived != kept || len(r.MissingIDs) == 0 || r.MissingIDs[0] != cut.Create().ID) {
			t.Errorf("cut room: %d arrived, missing IDs %v (want the create event first)", r.Arrived, r.MissingIDs)
		}
	}
	md, err := os.ReadFile(filepath.Join(outDir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range w.Users {
		for _, secret := range []string{u.PasswordHash, testASToken, syn.AdminToken()} {
			if secret != "" && (bytes.Contains(data, []byte(secret)) || bytes.Contains(md, []byte(secret))) {
				t.Fatalf("the report holds a secret of %s", u.ID)
			}
		}
	}

	// The cause goes away: warm finishes the room, the device is back.
	target.Faults().Clear()
	users.hide("", "")
	run(0, "warm", "-config", cfgPath)
	stopServe()
	for _, mode := range [][]string{nil, {"-offline"}} { // Synapse's admin API, then the export alone
		args := append([]string{"verify", "-config", cfgPath, "-export", exportDir, "-out", filepath.Join(dir, "report-ok")}, mode...)
		out = run(0, args...)
		if !strings.Contains(out, "Everything arrived") {
			t.Errorf("verify %v:\n%s", mode, out)
		}
	}
}
