//go:build !(linux || darwin || freebsd)

package preflight

import "errors"

// osStatfs is not implemented on this operating system; the disk check then reports nothing.
func osStatfs(string) (FS, error) {
	return FS{}, errors.New("free space is not measured on this operating system")
}
