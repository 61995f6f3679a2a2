package export

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

var hostileWorld = world.Options{Seed: 9, Users: 1, Rooms: 5, MessagesPerRoom: 6, HostileIDs: true}

// TestHostileIDsStayInside exports users and rooms whose IDs hold "/", "..", "\", non-ASCII and
// 255-byte localparts: every file lands directly in users/ or rooms/ under its encoded name, the
// name decodes back to the ID (or, when hashed, the manifest and the file name it), and nothing
// is written anywhere else.
func TestHostileIDsStayInside(t *testing.T) {
	w := testWorld(t, hostileWorld)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	runExport(t, exportConfig(sim, dir))

	entries, err := os.ReadDir(parent)
	if err != nil || len(entries) != 1 || entries[0].Name() != "out" {
		t.Fatalf("the export's parent holds %v (%v), want only out/", entries, err)
	}
	files := readDir(t, dir)
	man := checkManifest(t, w, files)
	hostile := 0
	for _, u := range w.Users {
		for _, lp := range world.HostileLocalparts {
			if u.Localpart == lp {
				hostile++
			}
		}
	}
	if hostile != len(world.HostileLocalparts) {
		t.Fatalf("world has %d hostile users, want %d", hostile, len(world.HostileLocalparts))
	}
	hashed := 0
	for p, data := range files {
		if p == exportfmt.ManifestName {
			continue
		}
		kind, name, ok := strings.Cut(p, "/")
		if !ok || (kind != "users" && kind != "rooms") || strings.Contains(name, "/") || !strings.HasSuffix(name, ".json") {
			t.Errorf("file %q is not directly in users/ or rooms/", p)
			continue
		}
		stem := strings.TrimSuffix(name, ".json")
		ent := man.Files[p]
		id, err := exportfmt.Decode(stem)
		switch {
		case errors.Is(err, exportfmt.ErrHashedName):
			hashed++
			id = ent.ID
			if !exportfmt.IsStemOf(stem, id) {
				t.Errorf("%s: hashed name does not belong to %q", p, id)
			}
		case err != nil:
			t.Errorf("%s: %v", p, err)
		case id != ent.ID:
			t.Errorf("%s decodes to %q, manifest says %q", p, id, ent.ID)
		}
		var head struct {
			UID    string `json:"uid"`
			RoomID string `json:"room_id"`
		}
		_ = json.Unmarshal(data, &head)
		if head.UID+head.RoomID != id {
			t.Errorf("%s holds %q, its name says %q", p, head.UID+head.RoomID, id)
		}
	}
	if hashed < 2 {
		t.Errorf("%d hashed names; the 255-byte user and the long room should both be hashed", hashed)
	}
	for _, r := range w.Rooms {
		if _, ok := files["rooms/"+exportfmt.Encode(r.ID)+".json"]; !ok {
			t.Errorf("room %q not exported", r.ID)
		}
	}
}

// TestSymlinkedSubdirectoryRefused plants users/ as a symbolic link out of the export directory:
// the export fails and writes nothing through it.
func TestSymlinkedSubdirectoryRefused(t *testing.T) {
	w := testWorld(t, smallWorld)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "users")); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(t.Context(), exportConfig(sim, dir)); err == nil {
		t.Fatal("export through a symlinked users/ succeeded")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("the export wrote %d entries outside its directory", len(entries))
	}
}

// fullFS is an FS whose file writes fail with ENOSPC once budget bytes have been written.
type fullFS struct {
	FS
	budget *diskBudget
}

// diskBudget is the space left on a fullFS.
type diskBudget struct {
	mu   sync.Mutex
	left int64
}

type fullFile struct {
	File
	budget *diskBudget
}

func (f fullFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return fullFile{file, f.budget}, nil
}

func (f fullFile) Write(b []byte) (int, error) {
	f.budget.mu.Lock()
	n := min(int64(len(b)), f.budget.left)
	f.budget.left -= n
	f.budget.mu.Unlock()
	w, err := f.File.Write(b[:n])
	if err == nil && n < int64(len(b)) {
		err = &os.PathError{Op: "write", Path: "file", Err: syscall.ENOSPC}
	}
	return w, err
}

// TestDiskFull runs an export on a file system that fills up half way: it stops with an error
// that says the disk is full, leaves a manifest that lists only intact files, and a rerun with
// space completes to exactly what an uninterrupted export writes.
func TestDiskFull(t *testing.T) {
	w := testWorld(t, smallWorld)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	ref := t.TempDir()
	runExport(t, exportConfig(sim, ref))
	want := readDir(t, ref)
	total := int64(0)
	for _, b := range want {
		total += int64(len(b))
	}

	dir := filepath.Join(t.TempDir(), "out")
	fsys, closer, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	cfg := exportConfig(sim, dir)
	cfg.FS = fullFS{fsys, &diskBudget{left: total / 2}}
	cfg.Jobs = 1
	s, err := Run(t.Context(), cfg)
	if err == nil || !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "full") || s.Complete {
		t.Fatalf("export on a full disk: %v", err)
	}
	if s.UsersDone+s.RoomsDone == 0 {
		t.Fatal("nothing was written before the disk filled up")
	}
	checkPartial(t, dir, want, false)

	runExport(t, exportConfig(sim, dir))
	compareExports(t, readDir(t, dir), want)
}

// checkPartial asserts what an interrupted export left: a manifest whose every file is intact,
// and no file (temporary ones aside) that differs from the uninterrupted export's.
func checkPartial(t *testing.T, dir string, want map[string][]byte, completed bool) {
	t.Helper()
	got := readDir(t, dir)
	var m exportfmt.Manifest
	if data, ok := got[exportfmt.ManifestName]; ok {
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("manifest after interruption: %v", err)
		}
		if m.Complete != completed {
			t.Fatalf("manifest complete = %v, the run completed = %v", m.Complete, completed)
		}
	}
	for p, ent := range m.Files {
		if data, ok := got[p]; !ok || exportfmt.SHA256Hex(data) != ent.SHA256 {
			t.Errorf("manifest lists %s, which is missing or not intact", p)
		}
	}
	for p, data := range got {
		if p == exportfmt.ManifestName || strings.HasPrefix(filepath.Base(p), exportfmt.TempPrefix) {
			continue
		}
		if string(data) != string(want[p]) {
			t.Errorf("%s differs from the uninterrupted export (%d bytes, want %d)", p, len(data), len(want[p]))
		}
	}
}
