//go:build !linux

package kv

// DropResidentPages does nothing where the kernel's advice is not used.
func (b *Bolt) DropResidentPages() error { return nil }
