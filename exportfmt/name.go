package exportfmt

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MaxStem is the longest file name stem Encode returns; with ".json.age" and the temporary
// names of the atomic writer it stays far below the 255-byte name limit of common file systems.
const MaxStem = 200

// hashedPrefix is how much of an over-long encoding a hashed stem keeps before "~" and the hash.
const hashedPrefix = MaxStem - 1 - sha256.Size*2

// ErrHashedName means a stem stands for an ID too long to spell out: the stem keeps the start of
// the encoding and the SHA-256 of the whole ID, and the ID itself is in the manifest and the file.
var ErrHashedName = errors.New("hashed file name: the ID is recorded in the manifest")

// literal reports whether byte c may stand for itself at a point of the output where prev is the
// previous output byte (0 at the start): lower-case letters, digits, '-', '_' and '.', except a
// leading '.' (hidden files, "." and "..") and a '.' after a '.' (no ".." anywhere). Upper-case
// letters are escaped so that names never collide on case-insensitive file systems.
func literal(c, prev byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		return true
	case c == '.':
		return prev != 0 && prev != '.'
	}
	return false
}

const hexDigits = "0123456789abcdef"

// Encode turns a Matrix ID into a file name stem that is safe on any POSIX or case-insensitive
// file system: only [a-z0-9._%~-], no path separator, no "..", no leading '.', never empty, at most
// MaxStem bytes. Every other byte is "%xx" (lower-case hex). It is reversible by Decode, except
// for IDs whose encoding is longer than MaxStem (or empty): those get a prefix, "~" and the hex
// SHA-256 of the ID, and Decode answers ErrHashedName.
func Encode(id string) string {
	var b strings.Builder
	b.Grow(len(id) + 8)
	var prev byte
	for i := 0; i < len(id); i++ {
		c := id[i]
		if literal(c, prev) {
			b.WriteByte(c)
			prev = c
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
		prev = 'x' // any byte that is not '.'
	}
	s := b.String()
	if s != "" && len(s) <= MaxStem {
		return s
	}
	cut := min(hashedPrefix, len(s))
	if i := strings.LastIndexByte(s[:cut], '%'); i >= 0 && i+3 > cut {
		cut = i // never split an escape
	}
	sum := sha256.Sum256([]byte(id))
	return s[:cut] + "~" + hex.EncodeToString(sum[:])
}

// Decode returns the Matrix ID a stem from Encode stands for. It accepts only what Encode
// produces (one stem per ID); for a hashed stem it returns an error wrapping ErrHashedName.
func Decode(stem string) (string, error) {
	body, hashed := stem, false
	if i := strings.IndexByte(stem, '~'); i >= 0 {
		body, hashed = stem[:i], true
		h := stem[i+1:]
		if len(h) != sha256.Size*2 || strings.Trim(h, hexDigits) != "" {
			return "", fmt.Errorf("file name %q: bad hash suffix", stem)
		}
	}
	if len(stem) > MaxStem || (!hashed && stem == "") {
		return "", fmt.Errorf("file name %q: not an encoded ID", stem)
	}
	var out []byte
	var prev byte
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '%' {
			if !literal(c, prev) {
				return "", fmt.Errorf("file name %q: byte %q at %d is not allowed", stem, c, i)
			}
			out = append(out, c)
			prev = c
			continue
		}
		if i+2 >= len(body) || strings.IndexByte(hexDigits, body[i+1]) < 0 || strings.IndexByte(hexDigits, body[i+2]) < 0 {
			return "", fmt.Errorf("file name %q: bad escape at %d", stem, i)
		}
		v := byte(strings.IndexByte(hexDigits, body[i+1])<<4 | strings.IndexByte(hexDigits, body[i+2]))
		if literal(v, prev) {
			return "", fmt.Errorf("file name %q: escape at %d stands for a byte written as itself", stem, i)
		}
		out = append(out, v)
		prev = 'x'
		i += 2
	}
	if hashed {
		return "", fmt.Errorf("file name %q (starts %q): %w", stem, out, ErrHashedName)
	}
	return string(out), nil
}

// IsStemOf reports whether stem is the file name stem of id; it resolves hashed stems against the
// ID the manifest or the file records.
func IsStemOf(stem, id string) bool { return Encode(id) == stem }
