package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"
	_ "modernc.org/sqlite" // the simulated Synapse's database, for the sessions the import carries

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/importer"
	"github.com/transition-matrix/transition-matrix/internal/conduitsim"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/mediastore/mediastoretest"
	"github.com/transition-matrix/transition-matrix/roomversions"
	"github.com/transition-matrix/transition-matrix/synapsedb/synapsedbtest"
	"github.com/transition-matrix/transition-matrix/verify"
)

// demoOldKeyEvents is how many of the demo's first local events Synapse signed with a key it has
// since rotated: they must verify on the target too.
const demoOldKeyEvents = 6

// demoASToken is the as_token of the appservice the demo registers with the simulated Conduit.
const demoASToken = "demo_appservice_token"

// demoRun is one run of the demo's whole flow: the commands an admin runs, in order, each with its
// output kept in <dir>/logs.
type demoRun struct {
	env        *Env
	dir        string
	w          *world.World
	sim        *synapsesim.Server
	configPath string
	step       int
	// archived, warmed and warmOwn are counts kept for the closing explanation: events archive
	// put in the cache, events the target holds after warm, and how many of those are its own.
	archived, archivedRooms int64
	warmed, warmOwn         int
}

func (d *demoRun) path(name string) string { return filepath.Join(d.dir, name) }

// run runs one shim command, keeps its output in logs/, prints one line and fails on a non-zero exit.
func (d *demoRun) run(ctx context.Context, what string, summary func() string, args ...string) error {
	d.step++
	var out bytes.Buffer
	start := time.Now()
	code := Run(ctx, args, &Env{Stdout: &out, Stderr: &out, Getenv: d.env.Getenv})
	took := time.Since(start).Round(time.Millisecond)
	logDir := d.path("logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(logDir, fmt.Sprintf("%d-%s.txt", d.step, args[0]))
	cmdLine := "shim " + strings.Join(args, " ")
	if err := os.WriteFile(logPath, []byte("$ "+cmdLine+"\n"+out.String()), 0o600); err != nil {
		return err
	}
	if code != 0 {
		fmt.Fprintf(d.env.Stdout, "%2d. %-8s FAILED (exit %d) after %s:\n$ %s\n%s", d.step, args[0], code, took, cmdLine, out.String())
		return fmt.Errorf("%s failed (exit %d); its output is in %s", args[0], code, logPath)
	}
	fmt.Fprintf(d.env.Stdout, "%2d. %-8s %-62s %8s\n", d.step, args[0], what+": "+summary(), took)
	return nil
}

// beforeCutover runs check, export and archive against Synapse, then imports into a Conduit
// database made the way Conduit's first start makes it.
func (d *demoRun) beforeCutover(ctx context.Context) error {
	if err := d.prepareSynapseFiles(ctx); err != nil {
		return err
	}
	var accept []string
	for _, r := range d.w.Rooms {
		if !roomversions.CanHost(r.Version) {
			accept = append(accept, "-accept", r.ID)
		}
	}
	args := append([]string{"check", "-config", d.configPath, "-out", d.dir}, accept...)
	if err := d.run(ctx, "preflight", func() string {
		if len(accept) > 0 {
			return fmt.Sprintf("no blockers (%d v1 room accepted: Conduit cannot host it)", len(accept)/2)
		}
		return "no blockers"
	}, args...); err != nil {
		return err
	}
	exportDir := d.path("export")
	if err := d.run(ctx, "users and rooms", func() string {
		return fmt.Sprintf("%d user files, %d room files → export/", countFiles(filepath.Join(exportDir, "users")), countFiles(filepath.Join(exportDir, "rooms")))
	}, "export", "-config", d.configPath, "-out", exportDir); err != nil {
		return err
	}
	if err := d.run(ctx, "history", func() string {
		cache, err := eventcache.Open(d.path("cache.db"), eventcache.Options{})
		if err != nil {
			return "cache unreadable: " + err.Error()
		}
		defer cache.Close()
		st, err := cache.Stats()
		if err != nil {
			return "cache unreadable: " + err.Error()
		}
		d.archived, d.archivedRooms = st.Events, st.Rooms
		return fmt.Sprintf("%d events of %d rooms verified into the cache", st.Events, st.Rooms)
	}, "archive", "-config", d.configPath); err != nil {
		return err
	}
	dbDir := d.path("conduit")
	if err := conduittest.NewFreshDB(dbDir, d.w.ServerName, conduit.Version010); err != nil {
		return fmt.Errorf("making the Conduit database: %w", err)
	}
	reportPath := d.path("import-report.json")
	return d.run(ctx, "into Conduit's database", func() string { return importSummary(reportPath) },
		"import", "conduit", "-config", d.configPath, "-export", exportDir, "-db", dbDir,
		"-synapse-db", d.path("synapse.db"), "-report", reportPath)
}

// prepareSynapseFiles writes what a real Synapse keeps outside its APIs: the media store and the
// database tables holding sessions and one-time keys.
func (d *demoRun) prepareSynapseFiles(ctx context.Context) error {
	mediaDir := d.path("media_store")
	if err := os.MkdirAll(mediaDir, 0o700); err != nil {
		return err
	}
	if err := mediastoretest.WriteWorld(mediaDir, d.w); err != nil {
		return fmt.Errorf("writing the simulated media store: %w", err)
	}
	db, err := sql.Open("sqlite", d.path("synapse.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := synapsedbtest.CreateSchema(ctx, db); err != nil {
		return fmt.Errorf("writing the simulated Synapse database: %w", err)
	}
	if err := synapsedbtest.Fill(ctx, db, "sqlite", d.w); err != nil {
		return fmt.Errorf("writing the simulated Synapse database: %w", err)
	}
	cfg, err := os.ReadFile(d.configPath)
	if err != nil {
		return err
	}
	cfg = bytes.Replace(cfg, []byte("\nsynapse:\n"), []byte("\nsynapse:\n  media_store_path: media_store\n"), 1)
	return os.WriteFile(d.configPath, cfg, 0o600)
}

// cutover starts the simulated patched Conduit on the imported database, then runs rejoin, warm
// and verify through the shim at shimURL; ok reports whether verify found everything.
func (d *demoRun) cutover(ctx context.Context, shimURL string) (bool, error) {
	db, err := conduit.Open(d.path("conduit"), conduit.Options{ServerName: d.w.ServerName, ReadOnly: true})
	if err != nil {
		return false, err
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	defer g.Wait()
	defer cancel()
	target, targetURL, err := d.startTarget(gctx, g, shimURL, db)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(d.env.Stdout, "A simulated Conduit with the transition-matrix patch runs on the imported database at %s:\n\n", targetURL)

	if err := d.run(ctx, "rooms", func() string {
		return fmt.Sprintf("%d rooms joined through the shim at their current state", len(d.held(target)))
	}, "rejoin", "-config", d.configPath); err != nil {
		return false, err
	}
	if err := d.run(ctx, "history", func() string {
		d.warmed, d.warmOwn = 0, 0
		for _, info := range d.held(target) {
			d.warmed += len(info.Timeline)
			for _, id := range info.Timeline {
				if d.w.Event(id) == nil {
					d.warmOwn++ // the target's own join, sent by rejoin
				}
			}
		}
		return fmt.Sprintf("%d events backfilled from the shim (+%d joins of its own)", d.warmed-d.warmOwn, d.warmOwn)
	}, "warm", "-config", d.configPath); err != nil {
		return false, err
	}
	reportDir := d.path("verify")
	var rep verify.Report
	verr := d.run(ctx, "source against target", func() string {
		data, err := os.ReadFile(filepath.Join(reportDir, "report.json"))
		if err == nil {
			err = json.Unmarshal(data, &rep)
		}
		if err != nil {
			return "no report: " + err.Error()
		}
		return fmt.Sprintf("%d rooms and %d users checked → verify/report.md", rep.Summary.Rooms, rep.Summary.Users)
	}, "verify", "-config", d.configPath, "-export", d.path("export"), "-conduit-db", d.path("conduit"), "-out", reportDir)
	if rep.Format == "" { // verify failed before writing a report
		return false, verr
	}
	fmt.Fprintln(d.env.Stdout)
	if err := d.printEndToEnd(&rep); err != nil {
		return false, err
	}
	return verr == nil && rep.Result == verify.ResultOK, nil
}

// startTarget serves a simulated patched Conduit that federates with the shim at shimURL, over
// data (the imported database; nil: the world's users only), and adds it to the configuration as
// target.url with the appservice token in as_token.
func (d *demoRun) startTarget(ctx context.Context, g *errgroup.Group, shimURL string, data conduitsim.UserData) (*conduitsim.Server, string, error) {
	opts := conduitsim.Options{World: d.w, ShimURL: shimURL, ASToken: demoASToken}
	if data != nil {
		opts.UserData = data
	}
	target, err := conduitsim.New(opts)
	if err != nil {
		return nil, "", err
	}
	targetURL, err := serveLoopback(ctx, g, target.Handler())
	if err != nil {
		return nil, "", err
	}
	target.URL = targetURL
	if err := os.WriteFile(d.path("as_token"), []byte(demoASToken+"\n"), 0o600); err != nil {
		return nil, "", err
	}
	f, err := os.OpenFile(d.configPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, "", err
	}
	_, err = fmt.Fprintf(f, "target:\n  url: %s\n  token_file: as_token\n", targetURL)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return target, targetURL, err
}

// printEndToEnd prints, room by room and then for users, what Synapse had and what the target holds.
func (d *demoRun) printEndToEnd(rep *verify.Report) error {
	tw := tabwriter.NewWriter(d.env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOM\tVERSION\tWHAT IT SHOWS\tSYNAPSE\tCONDUIT\tMISSING\tHIDDEN\tSTATE\tRESULT")
	synapseEvents, unhosted, unhostedEvents, memberless, memberlessEvents := 0, 0, 0, 0, 0
	for _, r := range rep.Rooms {
		kind, events := "", 0
		if wr := d.w.Room(r.RoomID); wr != nil {
			kind, events = demoRoomKinds[wr.Kind], len(wr.Events)
			if kind == "" {
				kind = wr.Kind
			}
		}
		synapseEvents += events
		switch r.Status {
		case verify.RoomUnsupportedVersion:
			unhosted, unhostedEvents = unhosted+1, unhostedEvents+events
		case verify.RoomNoLocalMembers:
			memberless, memberlessEvents = memberless+1, memberlessEvents+events
		}
		state := "-"
		if r.State != nil {
			state = fmt.Sprintf("%d/%d", r.State.Same+r.State.Newer, r.State.Compared)
		}
		result := r.Status
		switch r.Status {
		case verify.RoomOK:
			result = "whole"
		case verify.RoomUnsupportedVersion:
			result = "not hostable (room version " + roomversions.Effective(r.RoomVersion) + ")"
		case verify.RoomNoLocalMembers:
			result = "no local member: not carried"
		}
		if r.Status == verify.RoomUnsupportedVersion || r.Status == verify.RoomNoLocalMembers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t-\t-\t-\t-\t%s\n", r.RoomID, r.RoomVersion, kind, events, result)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.RoomID, r.RoomVersion, kind, r.Expected, r.Arrived, r.Missing, r.Hidden, state, result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s := rep.Summary
	fmt.Fprintf(d.env.Stdout, "\nUsers: %d checked, %d whole (profile, devices and their sessions, device and cross-signing keys, account data, key backup), %d differ, %d missing, %d deactivated.\n",
		s.Users, s.UsersOK, s.UsersDiffer, s.UsersMissing, s.UsersSkipped)
	fmt.Fprintf(d.env.Stdout, "HIDDEN: events Synapse itself holds only redacted (before any local user joined a \"joined\"-visibility room); STATE: current state pieces equal or newer on the target.\n")
	// The steps count different sets of events; say how they relate.
	s = rep.Summary
	fmt.Fprintf(d.env.Stdout, "Counts: Synapse holds %d events in %d rooms; archive cached %d of %d rooms (not the %d events of %d room(s) no local user is in, which Synapse does not serve); "+
		"the target cannot host %d room(s) of %d events, so verify expects %d and found %d; warm's %d also counts the target's own %d joins.\n",
		synapseEvents, len(rep.Rooms), d.archived, d.archivedRooms, memberlessEvents, memberless, unhosted, unhostedEvents,
		s.EventsExpected, s.EventsArrived, d.warmed, d.warmOwn)
	return nil
}

// demoRoomKinds says in words what each kind of generated room shows.
var demoRoomKinds = map[string]string{
	world.KindOrdinary:         "local members",
	world.KindRemoteMembers:    "remote members too",
	world.KindAllLeft:          "every local user left",
	world.KindJoinedVisibility: "made elsewhere, joined late",
	world.KindV1:               "room version 1",
}

// held are the world's rooms the target holds.
func (d *demoRun) held(target *conduitsim.Server) []conduitsim.RoomInfo {
	var out []conduitsim.RoomInfo
	for _, r := range d.w.Rooms {
		if info, ok := target.Room(r.ID); ok {
			out = append(out, info)
		}
	}
	return out
}

// importSummary reads the import's report for the step line.
func importSummary(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "no report: " + err.Error()
	}
	var rep importer.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return "unreadable report: " + err.Error()
	}
	return fmt.Sprintf("%d users, %d devices, %d sessions kept, %d media files", rep.Imported, rep.Planned.Devices, rep.Planned.AccessTokens, rep.Media.Carried)
}

func countFiles(dir string) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	return len(entries)
}
