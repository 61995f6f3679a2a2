// Package mediastoretest writes a world's local media into a directory laid out as Synapse's
// media_store_path, for tests of what reads it.
package mediastoretest

import (
	"os"
	"path/filepath"

	"github.com/transition-matrix/transition-matrix/internal/tb"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/mediastore"
)

// WriteWorld writes every upload and thumbnail of w under dir (directories 0700, files 0600).
func WriteWorld(dir string, w *world.World) error {
	s, err := mediastore.Open(dir)
	if err != nil {
		return err
	}
	for _, u := range w.Users {
		for _, m := range u.Media {
			p, err := s.LocalContentPath(m.ID)
			if err != nil {
				return err
			}
			if err := write(p, m.Bytes); err != nil {
				return err
			}
			for _, th := range m.Thumbnails {
				d, err := s.LocalThumbnailDir(m.ID)
				if err != nil {
					return err
				}
				if err := write(filepath.Join(d, mediastore.ThumbnailFileName(th.Width, th.Height, th.ContentType, th.Method)), th.Bytes); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func write(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o600)
}

// Write writes w's media into a new temporary directory and returns its path.
func Write(t tb.TB, w *world.World) string {
	t.Helper()
	dir := t.TempDir()
	if err := WriteWorld(dir, w); err != nil {
		t.Fatal(err)
	}
	return dir
}
