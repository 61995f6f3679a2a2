package kv

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// DropResidentPages lets the kernel take the file's pages out of this process's resident
// memory: bbolt reads the file through a read-only shared mapping, and every page a transaction
// walks stays resident, so a long archive's RSS would grow with the file. The data stays in the
// page cache; the next read faults the page back in.
func (b *Bolt) DropResidentPages() error {
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
