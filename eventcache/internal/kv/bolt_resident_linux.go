package kv

import (
	"os"
	"strconv"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// DropFileResidentAbove is how much file-backed memory the process may hold resident before
// DropResidentPages (and a long read) lets the kernel drop the file's mapped pages; checking
// first keeps the advice, and the page faults after it, rare.
var DropFileResidentAbove int64 = 64 << 20

// DropResidentPages lets the kernel take the file's pages out of this process's resident
// memory once it holds more than DropFileResidentAbove of file-backed memory: bbolt reads the
// file through a read-only shared mapping, and every page a transaction walks stays resident,
// so a long archive's RSS would grow with the file. The data stays in the page cache; the next
// read faults the page back in.
func (b *Bolt) DropResidentPages() error {
	if !fileResidentAbove(DropFileResidentAbove) {
		return nil
	}
	return b.db.View(dropMapped)
}

// dropMapped gives the kernel MADV_DONTNEED for the mapped file up to tx's size; an open
// transaction holds bbolt's mapping in place (bbolt remaps only in its writer's commit).
func dropMapped(tx *bolt.Tx) error {
	size := tx.Size()
	if size <= 0 {
		return nil
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, tx.DB().Info().Data, uintptr(size), syscall.MADV_DONTNEED); errno != 0 {
		return errno
	}
	return nil
}

// fileResidentAbove reports whether the process's resident file-backed and shared memory
// (/proc/self/statm) exceeds limit; true when it cannot tell.
func fileResidentAbove(limit int64) bool {
	if limit <= 0 {
		return true
	}
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return true
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return true
	}
	pages, err := strconv.ParseInt(f[2], 10, 64)
	return err != nil || pages*int64(os.Getpagesize()) > limit
}
