package export

import (
	"bytes"
	"context"
	"filippo.io/age"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

var (
	worldMu    sync.Mutex
	worldCache = map[world.Options]*world.World{}
)

// testWorld generates (once per options) a world for the tests.
func testWorld(t testing.TB, opts world.Options) *world.World {
	t.Helper()
	worldMu.Lock()
	defer worldMu.Unlock()
	if w, ok := worldCache[opts]; ok {
		return w
	}
	w, err := world.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	worldCache[opts] = w
	return w
}

// smallWorld is the default test world: every fixed user and room kind plus a few extras.
var smallWorld = world.Options{Seed: 5, Users: 4, Rooms: 3, MessagesPerRoom: 12, OldKeyEvents: 3}

// v12World is smallWorld with two rooms of version 12.
var v12World = world.Options{Seed: 5, Users: 4, Rooms: 3, MessagesPerRoom: 12, OldKeyEvents: 3, V12Rooms: 2}

// exportConfig is a Config for sim, writing to dir, with fast retries.
func exportConfig(sim *synapsesim.Server, dir string) Config {
	w := sim.World()
	return Config{
		Dir: dir,
		Synapse: synapseclient.Config{
			BaseURL: sim.URL, ServerName: w.ServerName, AdminToken: sim.AdminToken(), Identity: sim.Identity(),
			BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Timeout: 10 * time.Second,
		},
		ManifestInterval: 20 * time.Millisecond,
	}
}

func runExport(t testing.TB, cfg Config) *Summary {
	t.Helper()
	s, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if !s.Complete {
		t.Fatal("export not complete")
	}
	return s
}

// readDir returns every regular file under dir by slash path, with its bytes.
func readDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func serverOfID(id string) string {
	_, s, _ := strings.Cut(id, ":")
	return s
}

var manifestTimes = regexp.MustCompile(`"(started_at|finished_at)": "[^"]*"`)

// compareExports asserts two export directories are byte-identical, the manifest's timestamps aside.
func compareExports(t testing.TB, got, want map[string][]byte) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if p == exportfmt.ManifestName {
			g, w = manifestTimes.ReplaceAll(g, []byte(`"$1": "T"`)), manifestTimes.ReplaceAll(w, []byte(`"$1": "T"`))
		}
		if !ok {
			t.Errorf("%s missing", p)
		} else if !bytes.Equal(g, w) {
			t.Errorf("%s differs:\n got %.300s\nwant %.300s", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("extra file %s", p)
		}
	}
}

// readExported reads an exported file, decrypting it with identities when it is an .age file.
func readExported(fsys FS, name string, identities ...age.Identity) ([]byte, error) {
	data, err := fsys.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return exportfmt.Decrypt(name, data, identities...)
}
