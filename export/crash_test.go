package export

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// The child's environment: the export directory, and how to reach the parent's simulated Synapse
// (URL, admin token, server name, signing key file line), so the child generates no world.
const (
	crashChildEnv  = "EXPORT_CRASH_CHILD"
	crashSimEnv    = "EXPORT_CRASH_SIM"
	crashTokenEnv  = "EXPORT_CRASH_TOKEN"
	crashServerEnv = "EXPORT_CRASH_SERVER"
	crashKeyEnv    = "EXPORT_CRASH_KEY"
)

// crashWorld is big enough that a kill lands in the middle of the export.
var crashWorld = world.Options{Seed: 21, Users: 25, Rooms: 12, MessagesPerRoom: 8}

// TestCrashChild is the child side of TestKillAndResume: it exports from the parent's simulated
// Synapse into the directory it is given and prints a line after every item, until the parent
// kills it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("only runs as TestKillAndResume's child")
	}
	keys, err := signing.ParseKeyFile(strings.NewReader(os.Getenv(crashKeyEnv)), crashKeyEnv)
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	server := os.Getenv(crashServerEnv)
	cfg := Config{
		Dir: dir,
		Synapse: synapseclient.Config{BaseURL: os.Getenv(crashSimEnv), ServerName: server, AdminToken: os.Getenv(crashTokenEnv),
			Identity: &signing.Identity{ServerName: server, Keys: keys}, BaseBackoff: time.Millisecond},
		ManifestInterval: 20 * time.Millisecond,
	}
	cfg.Progress = func(p Progress) { fmt.Printf("done %d %d\n", p.UsersDone+p.RoomsDone, p.Users+p.Rooms) }
	fmt.Println("ready")
	if _, err := Run(t.Context(), cfg); err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	fmt.Println("complete")
	os.Exit(0)
}

// TestKillAndResume SIGKILLs an exporting child at random points, checks after each kill that
// nothing half-written is recorded or lying around under a final name, and that a final rerun
// leaves a directory byte-identical to an uninterrupted export (the manifest's times aside).
func TestKillAndResume(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("child")
	}
	w := testWorld(t, crashWorld)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	ref := filepath.Join(t.TempDir(), "ref")
	runExport(t, exportConfig(sim, ref))
	want := readDir(t, ref)

	dir := filepath.Join(t.TempDir(), "out")
	rng := rand.New(rand.NewPCG(20260502, 5))
	rounds := 6
	if !testing.Short() {
		rounds = 12
	}
	kills := 0
	for round := 0; round < rounds; round++ {
		killAfter := -1 // progress lines to read before SIGKILL, picked from the first line
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashSimEnv+"="+sim.URL, crashTokenEnv+"="+sim.AdminToken(),
			crashServerEnv+"="+w.ServerName, crashKeyEnv+"="+w.SigningKey.SynapseKeyFile())
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		seen, completed := 0, false
		for (killAfter < 0 || seen < killAfter) && sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "done "):
				seen++
				if killAfter < 0 {
					var done, total int
					fmt.Sscanf(line, "done %d %d", &done, &total)
					killAfter = 1 + rng.IntN(max(1, (total-done)/3))
				}
			case line == "complete":
				completed = true
			case strings.HasPrefix(line, "error "):
				t.Fatalf("round %d: child: %s", round, line)
			}
		}
		_ = cmd.Process.Kill() // SIGKILL, wherever the child is
		for sc.Scan() {
			if sc.Text() == "complete" {
				completed = true
			}
		}
		_ = cmd.Wait()
		if !completed {
			kills++
		}
		checkPartial(t, dir, want, completed)
	}
	if kills < 5 {
		t.Fatalf("only %d of %d rounds were killed before completing", kills, rounds)
	}
	s := runExport(t, exportConfig(sim, dir))
	t.Logf("%d of %d rounds killed mid-export; the final run kept %d items and exported %d", kills, rounds, s.Resumed, s.UsersDone+s.RoomsDone-s.Resumed)
	if s.Resumed == 0 {
		t.Error("the final rerun kept nothing from the killed runs")
	}
	compareExports(t, readDir(t, dir), want)
}
