package kv

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk meta page: a 16-byte page header, then magic, version,
// page size, flags (4 bytes each), root bucket (16), freelist page (8),
// high-water page ID (8), txid (8) and an FNV-64a checksum of what precedes it.
const (
	boltMagic      = 0xED0CDAED
	boltMetaOff    = 16
	boltMetaSumLen = 4*4 + 16 + 8 + 8 + 8
)

type boltMeta struct {
	pageSize   uint32
	freelist   uint64
	pgid, txid uint64
}

func parseBoltMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltMetaOff+boltMetaSumLen+8 {
		return boltMeta{}, false
	}
	m := b[boltMetaOff:]
	le := binary.NativeEndian // bbolt writes host byte order
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaSumLen])
	if h.Sum64() != le.Uint64(m[boltMetaSumLen:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), freelist: le.Uint64(m[32:]),
		pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// precheckBolt rejects, before bbolt maps it, a non-empty file whose meta
// pages are both invalid or which is shorter than its newest valid meta page
// says (a truncated copy): bbolt would fault reading past the end.
func precheckBolt(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	buf := make([]byte, 4096)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF {
		return err
	}
	best, ok := parseBoltMeta(buf[:n])
	// The second meta page sits one page in; its size is in the first (or the OS default).
	ps := int64(os.Getpagesize())
	if ok {
		ps = int64(best.pageSize)
	}
	if ps >= 512 && ps <= 1<<20 {
		buf2 := make([]byte, 4096)
		if n, err := f.ReadAt(buf2, ps); err == nil || err == io.EOF {
			if m2, ok2 := parseBoltMeta(buf2[:n]); ok2 && (!ok || m2.txid > best.txid) {
				best, ok = m2, true
			}
		}
	}
	if !ok {
		return fmt.Errorf("%w: %s: not a bbolt file or both meta pages damaged", ErrCorrupt, path)
	}
	if need := int64(best.pgid) * int64(best.pageSize); fi.Size() < need || best.freelist >= best.pgid && best.freelist != ^uint64(0) {
		return fmt.Errorf("%w: %s: file is %d bytes, its header says %d (truncated)", ErrCorrupt, path, fi.Size(), need)
	}
	return nil
}
