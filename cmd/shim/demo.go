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
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/config"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// runDemo runs the shim against a simulated Synapse: archive, serve, and a Conduit-like consumer
// that backfills every room through the shim; or, with -serve, keeps both running for trying.
func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "demo", "demo [-serve] [-dir DIR] [-messages N] [-big N] [-seed N]")
	serveOnly := fs.Bool("serve", false, "keep the simulated Synapse, the shim and a simulated Conduit running until interrupted; print their details as one JSON line first")
	dir := fs.String("dir", "", "folder for the demo's configuration, key, cache, export, Conduit database, logs and reports, kept afterwards (default: a new temporary folder, removed on exit)")
	messages := fs.Int("messages", 200, "activity (messages, edits, redactions, ...) per room")
	big := fs.Int("big", 0, "extra activity in one room, to watch a large room go through")
	seed := fs.Uint64("seed", 1, "seed of the generated world")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *messages < 1 || *big < 0 {
		return usagef("-messages must be at least 1 and -big not negative")
	}
	// A folder the demo made holds a signing key and an admin token: it goes when the demo ends,
	// also on SIGINT or SIGTERM (they end ctx, and Run returns through this defer).
	keep := *dir != ""
	if *dir == "" {
		d, err := os.MkdirTemp("", "shim-demo-")
		if err != nil {
			return err
		}
		*dir = d
		defer os.RemoveAll(d)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}

	started := time.Now()
	w, err := world.Generate(world.Options{Seed: *seed, MessagesPerRoom: *messages, BigRoomActivity: *big, OldKeyEvents: demoOldKeyEvents, V12Rooms: 1})
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
	d := &demoRun{env: env, dir: *dir, w: w, sim: sim, configPath: configPath}
	if !*serveOnly {
		where := "pass -dir DIR to keep each command's output, the export, the Conduit database and the reports"
		if keep {
			where = "each command's output is kept in " + filepath.Join(*dir, "logs")
		}
		fmt.Fprintf(env.Stdout, "Simulated Synapse at %s. Before the cutover (%s):\n\n", simURL, where)
		if err := d.beforeCutover(ctx); err != nil {
			return err
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
		_, targetURL, err := d.startTarget(gctx, g, shimURL, nil)
		if err != nil {
			return err
		}
		kept := "it is removed when the demo stops (pass -dir DIR to keep it)"
		if keep {
			kept = "it is kept"
		}
		fmt.Fprintf(env.Stderr, `Simulated Synapse at %s, the shim at %s, a simulated patched Conduit at %s.
The configuration, signing key and tokens are in %s; %s.
Try, in this order:
  shim check   -config %[6]s
  shim export  -config %[6]s -out %[7]s
  shim archive -config %[6]s
  shim rejoin  -config %[6]s
  shim warm    -config %[6]s
  shim verify  -config %[6]s -export %[7]s
(the simulated Conduit has no imported database: verify names each user's devices and keys as
missing; the plain 'shim demo' runs the import too)
Press Ctrl-C to stop.
`, simURL, shimURL, targetURL, *dir, kept, configPath, filepath.Join(*dir, "export"))
		// The JSON line comes last, so whoever reads it knows the hint above is written.
		if err := printDemoInfo(env.Stdout, w, demoURLs{synapse: simURL, shim: shimURL, target: targetURL}, keyPath, configPath, sim.AdminToken()); err != nil {
			return err
		}
		<-ctx.Done()
		cancel()
		return ignoreCanceled(g.Wait())
	}

	fmt.Fprintf(env.Stdout, "\nThe shim serves at %s. Synapse stays up for the cutover.\n\n", shimURL)
	ok, err := d.cutover(ctx, shimURL)
	cancel()
	if werr := ignoreCanceled(g.Wait()); err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("verify found something missing: see the table above")
	}
	fmt.Fprintf(env.Stdout, "\nEverything arrived: every room Conduit can host holds its whole history, every user their devices, keys and sessions. %s in all.\n",
		time.Since(started).Round(time.Millisecond))
	if keep {
		fmt.Fprintf(env.Stdout, "The export, the Conduit database, the logs and verify/report.md are in %s.\n", *dir)
	}
	return nil
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
	TargetURL      string         `json:"target_url"`
	Dir            string         `json:"dir"`
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

// demoURLs are where the demo's servers listen.
type demoURLs struct{ synapse, shim, target string }

func printDemoInfo(out io.Writer, w *world.World, urls demoURLs, keyPath, configPath, adminToken string) error {
	info := demoInfo{ServerName: w.ServerName, SynapseURL: urls.synapse, ShimURL: urls.shim, TargetURL: urls.target,
		Dir: filepath.Dir(configPath), SigningKeyPath: keyPath, ConfigPath: configPath, AdminToken: adminToken, Rooms: []demoInfoRoom{}}
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
