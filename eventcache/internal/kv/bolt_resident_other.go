//go:build !linux

package kv

import bolt "go.etcd.io/bbolt"

// DropResidentPages does nothing where the kernel's advice is not used.
func (b *Bolt) DropResidentPages() error { return nil }

func dropMapped(*bolt.Tx) error { return nil }
