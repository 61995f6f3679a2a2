// Package atomicfile replaces a file's contents in one step: readers see the old bytes or the
// new ones, never a part, and a crash leaves the old file in place.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write replaces path with data, readable and writable by the owner only (perm 0o600), synced to
// disk before the rename.
func Write(path string, data []byte) error {
	return WriteFrom(path, 0o600, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFrom replaces path with what fill writes, with permissions perm. A temporary file in the
// same folder receives the bytes, is synced, then renamed over path; on any error it is removed
// and path is untouched.
func WriteFrom(path string, perm os.FileMode, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // a no-op once renamed
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	SyncDir(filepath.Dir(path))
	return nil
}

// Move renames from to to and syncs to's folder so that the rename survives a crash.
func Move(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	SyncDir(filepath.Dir(to))
	return nil
}

// SyncDir flushes a folder's entries (best effort: some file systems refuse it).
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
