//go:build linux || darwin || freebsd

package preflight

import (
	"fmt"
	"os"
	"syscall"
)

// osStatfs reads the free space and device of the file system path is on.
func osStatfs(path string) (FS, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return FS{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return FS{}, err
	}
	var dev uint64
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		dev = uint64(s.Dev)
	}
	return FS{FreeBytes: uint64(st.Bavail) * uint64(st.Bsize), Device: dev}, nil
}
