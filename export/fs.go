package export

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// FS is the export directory. Names are slash-separated and relative to it; the default
// implementation is an *os.Root, so no name (and no symbolic link) can reach outside it.
type FS interface {
	MkdirAll(name string, perm fs.FileMode) error
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	ReadFile(name string) ([]byte, error)
	ReadDir(name string) ([]fs.DirEntry, error)
}

// File is an open file of an FS.
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// rootFS is an FS over an *os.Root.
type rootFS struct{ r *os.Root }

// OpenDir creates dir (mode 0700) if needed, tightens its mode to 0700 if it was wider, and opens
// it as an FS confined to it.
func OpenDir(dir string) (FS, io.Closer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("export directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("export directory: %w", err)
	}
	if !st.IsDir() {
		return nil, nil, fmt.Errorf("export directory %s is not a directory", dir)
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("export directory %s: setting mode 0700: %w", dir, err)
		}
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("export directory: %w", err)
	}
	return rootFS{r}, r, nil
}

func (f rootFS) MkdirAll(name string, perm fs.FileMode) error { return f.r.MkdirAll(name, perm) }
func (f rootFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	return f.r.OpenFile(name, flag, perm)
}
func (f rootFS) Rename(oldname, newname string) error { return f.r.Rename(oldname, newname) }
func (f rootFS) Remove(name string) error             { return f.r.Remove(name) }
func (f rootFS) ReadFile(name string) ([]byte, error) { return f.r.ReadFile(name) }
func (f rootFS) ReadDir(name string) ([]fs.DirEntry, error) {
	return fs.ReadDir(f.r.FS(), name)
}

// tempPrefix starts the names of files being written; a name with it is never part of an export
// and is removed when an export starts.
const tempPrefix = ".tmp-"

// syncDir makes a rename in dir durable.
func syncDir(fsys FS, dir string) error {
	d, err := fsys.OpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) { // file systems that cannot sync directories
		err = nil
	}
	return err
}

// writeAtomic writes data to name so that name holds either its old content or all of data, never
// a part: a temporary file (mode 0600) in the same directory, fsync, rename over name, fsync of
// the directory.
func writeAtomic(fsys FS, name string, data []byte) (err error) {
	dir := path.Dir(name)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(dir, exportfmt.TempPrefix+hex.EncodeToString(rnd[:]))
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return describeWriteError(name, err)
	}
	defer func() {
		if err != nil {
			_ = fsys.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return describeWriteError(name, err)
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return describeWriteError(name, err)
	}
	if err = f.Close(); err != nil {
		return describeWriteError(name, err)
	}
	if err = fsys.Rename(tmp, name); err != nil {
		return describeWriteError(name, err)
	}
	if err = syncDir(fsys, dir); err != nil {
		return describeWriteError(name, err)
	}
	return nil
}

// ErrDiskFull is wrapped by write errors caused by a full file system (or quota).
var ErrDiskFull = errors.New("the file system holding the export directory is full: free some space and rerun the same command to resume")

func describeWriteError(name string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("writing %s: %w (%v)", name, ErrDiskFull, err)
	}
	return fmt.Errorf("writing %s: %w", name, err)
}

// removeTemps deletes the temporary files a killed export left in dir.
func removeTemps(fsys FS, dir string) error {
	entries, err := fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), exportfmt.TempPrefix) {
			if err := fsys.Remove(path.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}
