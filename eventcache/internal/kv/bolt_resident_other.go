//go:build !linux

package kv

import bolt "go.etcd.io/bbolt"

// DropFileResidentAbove is unused where the kernel's advice is not used.
var DropFileResidentAbove int64 = 64 << 20

// DropResidentPages does nothing where the kernel's advice is not used.
func (b *Bolt) DropResidentPages() error { return nil }

func dropMapped(*bolt.Tx) error { return nil }

func fileResidentAbove(int64) bool { return false }
