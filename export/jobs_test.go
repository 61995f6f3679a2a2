package export

import (
	"path/filepath"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

// jobsWorld has enough users and rooms that eight workers overlap on every kind of item.
var jobsWorld = world.Options{Seed: 18, Users: 40, Rooms: 24, MessagesPerRoom: 6, OldKeyEvents: 2, V12Rooms: 2}

// TestJobsDoNotChangeTheExport: -j 1 and -j 8 write byte-identical directories (the manifest's
// timestamps aside).
func TestJobsDoNotChangeTheExport(t *testing.T) {
	sim := synapsesim.Start(t, synapsesim.Options{World: testWorld(t, jobsWorld)})
	dirs := map[int]string{}
	for _, jobs := range []int{1, 8} {
		cfg := exportConfig(sim, filepath.Join(t.TempDir(), "out"))
		cfg.Jobs = jobs
		s := runExport(t, cfg)
		if s.UsersDone != s.Users || s.RoomsDone != s.Rooms || s.Users < 40 {
			t.Fatalf("-j %d: %d/%d users, %d/%d rooms", jobs, s.UsersDone, s.Users, s.RoomsDone, s.Rooms)
		}
		dirs[jobs] = cfg.Dir
	}
	compareExports(t, readDir(t, dirs[8]), readDir(t, dirs[1]))
}
