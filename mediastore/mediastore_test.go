package mediastore_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/mediastore"
	"github.com/transition-matrix/transition-matrix/mediastore/mediastoretest"
)

func testWorld(t *testing.T) *world.World {
	t.Helper()
	w, err := world.Generate(world.Options{Seed: 3, Rooms: -1, MessagesPerRoom: 2})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestReadsTheWorldsMediaBack(t *testing.T) {
	w := testWorld(t)
	dir := mediastoretest.Write(t, w)
	s, err := mediastore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, thumbs := 0, 0
	for _, u := range w.Users {
		for _, m := range u.Media {
			n++
			p, _ := s.LocalContentPath(m.ID)
			if want := filepath.Join(dir, "local_content", m.ID[:2], m.ID[2:4], m.ID[4:]); p != want {
				t.Errorf("path %s, want %s", p, want)
			}
			b, err := s.ReadLocal(m.ID, int64(len(m.Bytes)))
			if err != nil || !bytes.Equal(b, m.Bytes) {
				t.Errorf("%s: %d bytes, %v", m.ID, len(b), err)
			}
			ths, err := s.LocalThumbnails(m.ID)
			if err != nil || len(ths) != len(m.Thumbnails) {
				t.Fatalf("%s: thumbnails %+v, %v; want %d", m.ID, ths, err, len(m.Thumbnails))
			}
			for _, th := range m.Thumbnails {
				found := false
				for _, g := range ths {
					if g.Width == th.Width && g.Height == th.Height && g.ContentType == th.ContentType && g.Method == th.Method && g.Size == int64(len(th.Bytes)) {
						found = true
						b, err := os.ReadFile(g.Path)
						if err != nil || !bytes.Equal(b, th.Bytes) {
							t.Errorf("thumbnail %s: %v", g.Path, err)
						}
						if want := filepath.Join(dir, "local_thumbnails", m.ID[:2], m.ID[2:4], m.ID[4:], th.FileName()); g.Path != want {
							t.Errorf("thumbnail path %s, want %s", g.Path, want)
						}
					}
				}
				if !found {
					t.Errorf("%s: thumbnail %+v not listed in %+v", m.ID, th, ths)
				}
				thumbs++
			}
		}
	}
	if n < 5 || thumbs != 2 {
		t.Errorf("%d uploads, %d thumbnails; want several and 2", n, thumbs)
	}
}

func TestRefusesEscapesAndDamage(t *testing.T) {
	w := testWorld(t)
	dir := mediastoretest.Write(t, w)
	s, err := mediastore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(filepath.Dir(dir), "secret")
	_ = os.WriteFile(outside, []byte("secret"), 0o600)
	for _, id := range []string{"", "abc", "../../../etc/passwd", "ab/../../x", "....x", "ab..cdef", "abcd/../../secret", "ab cdefgh", "abcd\x00x", "ab\\cdef"} {
		if p, err := s.LocalContentPath(id); err == nil {
			t.Errorf("media ID %q gave path %s", id, p)
		}
		if _, err := s.ReadLocal(id, 6); err == nil {
			t.Errorf("media ID %q was read", id)
		}
		if _, err := s.LocalThumbnails(id); err == nil {
			t.Errorf("thumbnails of media ID %q were listed", id)
		}
	}
	alice := w.User("@alice:" + w.ServerName)
	m := alice.Media[1]
	_, err = s.ReadLocal(m.ID, int64(len(m.Bytes))+10)
	if err == nil || !strings.Contains(err.Error(), m.ID) || !strings.Contains(err.Error(), "shorter than its media_length") {
		t.Errorf("short file: %v", err)
	}
	if _, err := s.ReadLocal(m.ID, int64(len(m.Bytes))-1); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Errorf("long file: %v", err)
	}
	p, _ := s.LocalContentPath(m.ID)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadLocal(m.ID, int64(len(m.Bytes))); err == nil || !strings.Contains(err.Error(), "media "+m.ID) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
	if err := os.Symlink(outside, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadLocal(m.ID, 6); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("symlink to a file outside the store: %v", err)
	}
	thumbDir, _ := s.LocalThumbnailDir(alice.Media[2].ID)
	if err := os.WriteFile(filepath.Join(thumbDir, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LocalThumbnails(alice.Media[2].ID); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("a stray file among thumbnails: %v", err)
	}
	if _, err := mediastore.Open(filepath.Join(dir, "nope")); err == nil {
		t.Error("a missing store was opened")
	}
	if _, err := mediastore.Open(outside); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as store: %v", err)
	}
	if _, err := mediastore.Open(""); err == nil || !strings.Contains(err.Error(), "media_store_path") {
		t.Errorf("empty path: %v", err)
	}
}
