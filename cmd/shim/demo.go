package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/config"
	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// runDemo runs the shim against a simulated Synapse: archive, serve, and a Conduit-like consumer
// that backfills every room through the shim; or, with -serve, keeps both running for trying.
func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "demo", "demo [-serve] [-dir DIR] [-messages N] [-big N] [-seed N]")
	serveOnly := fs.Bool("serve", false, "keep the simulated Synapse and the shim running until interrupted; print their details as one JSON line first")
	dir := fs.String("dir", "", "folder for the demo's configuration, key and cache (default: a new temporary folder)")
	messages := fs.Int("messages", 200, "activity (messages, edits, redactions, ...) per room")
	big := fs.Int("big", 0, "extra activity in one room, to watch a large room go through")
	seed := fs.Uint64("seed", 1, "seed of the generated world")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *messages < 1 || *big < 0 {
		return usagef("-messages must be at least 1 and -big not negative")
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "shim-demo-")
		if err != nil {
			return err
		}
		*dir = d
		if !*serveOnly {
			defer os.RemoveAll(d)
		}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}

	started := time.Now()
	w, err := world.Generate(world.Options{Seed: *seed, MessagesPerRoom: *messages, BigRoomActivity: *big})
	if err != nil {
		return fmt.Errorf("generating the world: %w", err)
	}
	if !*serveOnly {
		fmt.Fprintf(env.Stdout, "Generated a world of %d rooms and %d signed events for %s in %s.\n",
			len(w.Rooms), w.EventCount(), w.ServerName, time.Since(started).Round(time.Millisecond))
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	defer g.Wait()
	defer cancel()

	sim := synapsesim.New(synapsesim.Options{World: w})
	simURL, err := serveLoopback(gctx, g, sim.Handler())
	if err != nil {
		return err
	}
	sim.URL = simURL
	configPath, keyPath, err := writeDemoConfig(*dir, w, simURL, sim.AdminToken())
	if err != nil {
		return err
	}
	cfg, err := config.Load(configPath, env.Getenv)
	if err != nil {
		return err
	}

	quiet := &Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: env.Getenv}
	if !*serveOnly {
		fmt.Fprintf(env.Stdout, "Simulated Synapse at %s. Archiving every room into the verified cache:\n\n", simURL)
		archiveEnv := &Env{Stdout: env.Stdout, Stderr: io.Discard, Getenv: env.Getenv}
		if code := Run(ctx, []string{"archive", "-config", configPath}, archiveEnv); code != 0 {
			return fmt.Errorf("archive failed (exit %d)", code)
		}
	}

	shimAddr := make(chan string, 1)
	log, err := newLogger(quiet, cfg)
	if err != nil {
		return err
	}
	serveEnv := &Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: env.Getenv, Ready: func(what, addr string) {
		if what == "federation" {
			shimAddr <- addr
		}
	}}
	serveCfg := cfg
	if *serveOnly { // the configuration's own cache stays free for 'shim archive -config' and 'shim serve -config'
		c := *cfg
		c.Cache.Path = "demo-serve-cache.db"
		serveCfg = &c
	}
	g.Go(func() error { return serve(gctx, serveEnv, serveCfg, log) })
	var shimURL string
	select {
	case addr := <-shimAddr:
		shimURL = "http://" + addr
	case <-gctx.Done():
		return fmt.Errorf("the shim did not start: %w", g.Wait())
	}

	if *serveOnly {
		if err := printDemoInfo(env.Stdout, w, simURL, shimURL, keyPath, configPath, sim.AdminToken()); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "Simulated Synapse at %s, shim at %s; try: shim archive -config %s\nPress Ctrl-C to stop.\n", simURL, shimURL, configPath)
		<-ctx.Done()
		cancel()
		return ignoreCanceled(g.Wait())
	}

	fmt.Fprintf(env.Stdout, "\nThe shim serves at %s. Synapse stays up; a Conduit-like consumer backfills each room through the shim:\n\n", shimURL)
	ok, err := backfillEveryRoom(ctx, env.Stdout, w, shimURL)
	cancel()
	if werr := ignoreCanceled(g.Wait()); err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("some rooms did not arrive whole")
	}
	fmt.Fprintf(env.Stdout, "\nEvery room arrived whole, newest to oldest, every signature verified (REDACTED: events Synapse serves redacted, as it shows them to itself). %s in all.\n", time.Since(started).Round(time.Millisecond))
	return nil
}

// backfillEveryRoom has the consumer backfill each room through the shim and prints a table; ok
// is true when every room Synapse can serve arrived whole.
func backfillEveryRoom(ctx context.Context, out io.Writer, w *world.World, shimURL string) (bool, error) {
	id := worldIdentity(w)
	keys := conduitlike.WorldKeys(w)
	c := &conduitlike.Consumer{Identity: id, Destination: w.ServerName, BaseURL: shimURL, Keys: keys}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ROOM\tVERSION\tKIND\tEXPECTED\tRECEIVED\tVERIFIED\tREDACTED\tREJECTED\tTIME\tRESULT\t")
	ok := true
	for _, r := range w.Rooms {
		if r.Kind == world.KindAllLeft {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t-\t-\t-\t-\t-\tnot served: no local user is joined\t\n", r.ID, r.Version, r.Kind, len(r.Events))
			continue
		}
		start := time.Now()
		res, err := c.BackfillRoom(ctx, r.ID, r.Version, r.ForwardExtremities())
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			ok = false
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t-\t-\t-\t-\t%s\tFAILED: %v\t\n", r.ID, r.Version, r.Kind, len(r.Events), took, err)
			continue
		}
		whole := res.ReachedCreate && res.Count(conduitlike.Rejected) == 0 && sameEvents(res, r)
		result := "whole"
		if !whole {
			ok, result = false, "INCOMPLETE"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", r.ID, r.Version, r.Kind, len(r.Events), len(res.Timeline),
			res.Count(conduitlike.Verified), res.Count(conduitlike.Redacted), res.Count(conduitlike.Rejected), took, result)
	}
	return ok, tw.Flush()
}

// sameEvents reports whether the consumer received exactly the room's events, newest first.
func sameEvents(res *conduitlike.Result, r *world.Room) bool {
	if len(res.Timeline) != len(r.Events) {
		return false
	}
	for i, e := range res.Timeline {
		if r.Event(e.EventID) == nil || (i > 0 && e.Depth > res.Timeline[i-1].Depth) {
			return false
		}
	}
	return true
}

func worldIdentity(w *world.World) *signing.Identity {
	return &signing.Identity{ServerName: w.ServerName, Keys: []signing.Key{{ID: signing.KeyID(w.SigningKey.KeyID), Seed: w.SigningKey.Private.Seed()}}}
}

// serveLoopback serves h on a fresh 127.0.0.1 port until ctx ends.
func serveLoopback(ctx context.Context, g *errgroup.Group, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return srv.Close() // a connection opened but never used counts as busy for 5 s
		}
		return err
	})
	return "http://" + ln.Addr().String(), nil
}

// writeDemoConfig writes the signing key, the admin token and a shim configuration for the
// simulated Synapse into dir (files 0600) and returns the configuration's and key's paths.
func writeDemoConfig(dir string, w *world.World, synapseURL, adminToken string) (configPath, keyPath string, err error) {
	keyPath = filepath.Join(dir, w.ServerName+".signing.key")
	tokenPath := filepath.Join(dir, "admin_token")
	homeserverPath := filepath.Join(dir, "homeserver.yaml")
	configPath = filepath.Join(dir, "shim.yaml")
	// As on a real server, the shim reads the key and the retired keys (public halves only) from
	// Synapse's homeserver.yaml, so events Synapse signed before a key rotation still verify.
	var old strings.Builder
	if len(w.OldKeys) > 0 {
		old.WriteString("old_signing_keys:\n")
		for _, k := range w.OldKeys {
			fmt.Fprintf(&old, "  %q: {key: %q, expired_ts: %d}\n", k.KeyID, signing.EncodeBase64(k.Public), k.ExpiredTS)
		}
	}
	files := map[string]string{
		keyPath:   w.SigningKey.SynapseKeyFile(),
		tokenPath: adminToken + "\n",
		homeserverPath: fmt.Sprintf(`# A stand-in for the simulated Synapse's homeserver.yaml: what the shim reads from it.
server_name: %s
signing_key_path: %s
%s`, w.ServerName, filepath.Base(keyPath), old.String()),
		configPath: fmt.Sprintf(`# Written by 'shim demo' for its simulated Synapse.
synapse_config: %s
synapse:
  url: %s
  admin_token_file: %s
listen: 127.0.0.1:0
cache:
  path: %s
log:
  level: warn
`, filepath.Base(homeserverPath), synapseURL, filepath.Base(tokenPath), "cache.db"),
	}
	for p, content := range files {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return "", "", err
		}
	}
	return configPath, keyPath, nil
}

// demoInfo is the JSON line `shim demo -serve` prints first.
type demoInfo struct {
	ServerName     string         `json:"server_name"`
	SynapseURL     string         `json:"synapse_url"`
	ShimURL        string         `json:"shim_url"`
	SigningKeyPath string         `json:"signing_key_path"`
	ConfigPath     string         `json:"config_path"`
	AdminToken     string         `json:"admin_token"`
	Rooms          []demoInfoRoom `json:"rooms"`
}

type demoInfoRoom struct {
	RoomID        string `json:"room_id"`
	RoomVersion   string `json:"room_version"`
	Events        int    `json:"events"`
	LatestEventID string `json:"latest_event_id"`
}

func printDemoInfo(out io.Writer, w *world.World, synapseURL, shimURL, keyPath, configPath, adminToken string) error {
	info := demoInfo{ServerName: w.ServerName, SynapseURL: synapseURL, ShimURL: shimURL, SigningKeyPath: keyPath,
		ConfigPath: configPath, AdminToken: adminToken, Rooms: []demoInfoRoom{}}
	for _, r := range w.Rooms {
		info.Rooms = append(info.Rooms, demoInfoRoom{RoomID: r.ID, RoomVersion: r.Version, Events: len(r.Events), LatestEventID: r.Latest().ID})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(info); err != nil {
		return err
	}
	_, err := out.Write(buf.Bytes())
	return err
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
