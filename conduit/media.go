package conduit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/atomicfile"
)

// Media is one local media item's metadata.
type Media struct {
	Server      string // the server name in the mxc URI
	MediaID     string
	Uploader    string // user ID; empty: unknown (no uploader rows)
	ContentType string
	Filename    string
	CreatedTS   int64 // milliseconds; 0: now
	// UnauthenticatedAccess marks the item as servable on the legacy unauthenticated media
	// endpoints, as Conduit marks the media it migrated from before authenticated media
	// (a trailing 0xFF in servernamemediaid_metadata; Conduit ≥ 0.10 only).
	UnauthenticatedAccess bool
	// SHA256 is the hex sha256 of the bytes when the source recorded it (Synapse after 1.120): a file
	// already stored under it is used without copying or hashing again, and copied bytes whose
	// hash differs are refused (ErrMediaHashMismatch).
	SHA256 string
}

// ErrMediaHashMismatch: a media file's bytes do not have the sha256 its source recorded.
var ErrMediaHashMismatch = errors.New("media bytes differ from their recorded sha256")

// Media directory layout of Conduit ≥ 0.10's default directory_structure (deep, length 2, depth 2:
// src/config/mod.rs::DirectoryStructure::default, src/service/globals/mod.rs::get_media_path).
const (
	mediaDirLength = 2
	mediaDirDepth  = 2
)

// ContentAddressedPath is where Conduit ≥ 0.10 keeps a file of this sha256 under mediaPath.
func ContentAddressedPath(mediaPath string, sum [32]byte) string {
	name := hex.EncodeToString(sum[:])
	parts := []string{mediaPath}
	for i := 0; i < mediaDirDepth; i++ {
		parts = append(parts, name[:mediaDirLength])
		name = name[mediaDirLength:]
	}
	return filepath.Join(append(parts, name)...)
}

// LegacyMediaKey is Conduit 0.9's mediaid_file key of an original (not a thumbnail):
// "mxc://server/id" 0xFF width 0 (u32 BE) height 0 (u32 BE) 0xFF content disposition 0xFF
// content type (v0.9.0 src/database/key_value/media.rs::create_file_metadata).
func LegacyMediaKey(m Media) []byte {
	k := append([]byte("mxc://"+m.Server+"/"+m.MediaID), sep)
	k = append(k, be32(0)...)
	k = append(k, be32(0)...)
	k = append(k, sep)
	k = append(k, ContentDisposition(m.Filename)...)
	k = append(k, sep)
	return append(k, m.ContentType...)
}

// legacyMediaPrefix is the part of LegacyMediaKey Conduit 0.9 searches by.
func legacyMediaPrefix(server, mediaID string) []byte {
	k := append([]byte("mxc://"+server+"/"+mediaID), sep)
	k = append(k, be32(0)...)
	k = append(k, be32(0)...)
	return append(k, sep)
}

// LegacyMediaPath is Conduit 0.9's file of a mediaid_file key: base64url without padding of the key
// (v0.9.0 src/service/globals/mod.rs::get_media_file).
func LegacyMediaPath(mediaPath string, key []byte) string {
	return filepath.Join(mediaPath, base64.RawURLEncoding.EncodeToString(key))
}

// ContentDisposition renders the header value Conduit 0.9 stores for an upload: "inline", plus
// "; filename=<token or quoted string>" for an ASCII name (control characters dropped) or
// "; filename*=utf-8”<percent-encoded>" otherwise (ruma-common http_headers, as pinned by 0.9.0).
func ContentDisposition(filename string) string {
	if filename == "" {
		return "inline"
	}
	ascii := true
	for i := 0; i < len(filename); i++ {
		if filename[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		var b strings.Builder
		b.WriteString("inline; filename*=utf-8''")
		for i := 0; i < len(filename); i++ {
			c := filename[i]
			if isAlnum(c) || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		return b.String()
	}
	var clean strings.Builder
	for i := 0; i < len(filename); i++ {
		if c := filename[i]; (c >= 0x21 && c <= 0x7E) || c == ' ' || c == '\t' {
			clean.WriteByte(c)
		}
	}
	name := clean.String()
	if name != "" && isToken(name) {
		return "inline; filename=" + name
	}
	name = strings.ReplaceAll(name, `\`, `\\`)
	name = strings.ReplaceAll(name, `"`, `\"`)
	return `inline; filename="` + name + `"`
}

func isAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}

// PutMediaBytes is PutMedia for content in memory.
func (tx *Tx) PutMediaBytes(m Media, content []byte) error {
	return tx.PutMedia(m, bytes.NewReader(content))
}

// PutMedia writes a media file and its metadata in the layout of the database's version. The file
// is written to a temporary name, synced and renamed (0600, directories 0700); a file already
// holding the same bytes is left alone, and a file this Update created is removed if it fails.
func (tx *Tx) PutMedia(m Media, content io.Reader) error {
	if m.Server == "" || m.MediaID == "" || strings.ContainsAny(m.MediaID, "/\xff") {
		return fmt.Errorf("conduit: bad media ID mxc://%s/%s", m.Server, m.MediaID)
	}
	if strings.ContainsRune(m.Filename, '\xff') || strings.ContainsRune(m.ContentType, '\xff') {
		return fmt.Errorf("conduit: media mxc://%s/%s: filename or content type holds 0xFF", m.Server, m.MediaID)
	}
	if m.Uploader != "" {
		if err := tx.checkLocalUser(m.Uploader); err != nil {
			return fmt.Errorf("conduit: media mxc://%s/%s uploader: %w", m.Server, m.MediaID, err)
		}
	}
	var recorded [32]byte
	if m.SHA256 != "" {
		b, err := hex.DecodeString(m.SHA256)
		if err != nil || len(b) != sha256.Size {
			return fmt.Errorf("conduit: media mxc://%s/%s: recorded sha256 %q is not 64 hex digits", m.Server, m.MediaID, m.SHA256)
		}
		copy(recorded[:], b)
		if tx.db.MediaLayout() == MediaContentAddressed {
			// A file Conduit (or an earlier run) stored under this hash holds these bytes.
			if st, err := os.Stat(ContentAddressedPath(tx.db.mediaPath, recorded)); err == nil && st.Mode().IsRegular() {
				return tx.putMediaRows(m, recorded, uint64(st.Size()))
			}
		}
	}
	if err := os.MkdirAll(tx.db.mediaPath, 0o700); err != nil {
		return fmt.Errorf("conduit: media directory: %w", err)
	}
	tmp, sum, size, err := writeTemp(tx.db.mediaPath, content)
	if err != nil {
		return fmt.Errorf("conduit: media mxc://%s/%s: %w", m.Server, m.MediaID, err)
	}
	if m.SHA256 != "" && sum != recorded {
		os.Remove(tmp)
		return fmt.Errorf("conduit: media mxc://%s/%s: %w: the file has %x, Synapse recorded %s at upload: the media store copy is damaged; restore it from a backup of media_store_path and rerun",
			m.Server, m.MediaID, ErrMediaHashMismatch, sum, m.SHA256)
	}
	defer os.Remove(tmp) // a no-op once renamed
	if tx.db.MediaLayout() == MediaLegacy {
		return tx.putLegacyMedia(m, tmp, sum)
	}
	if err := tx.placeFile(tmp, ContentAddressedPath(tx.db.mediaPath, sum), sum); err != nil {
		return fmt.Errorf("conduit: media mxc://%s/%s: %w", m.Server, m.MediaID, err)
	}
	return tx.putMediaRows(m, sum, size)
}

// putMediaRows writes Conduit ≥ 0.10's media rows (src/database/key_value/media.rs::create_file_metadata).
func (tx *Tx) putMediaRows(m Media, sum [32]byte, size uint64) error {
	created := uint64(time.Now().Unix())
	if m.CreatedTS > 0 {
		created = uint64(m.CreatedTS / 1000)
	}
	// filehash_metadata[sha256] = size ++ created ++ last access (u64 BE seconds). A row of the same
	// size is kept as it is: Conduit updates the last access time itself.
	old, ok, err := tx.get("filehash_metadata", sum[:])
	if err != nil {
		return err
	}
	if ok && len(old) == 24 && binary.BigEndian.Uint64(old[:8]) == size {
		tx.changes.Unchanged++
	} else {
		v := append(be64(size), be64(created)...)
		if err := tx.set("filehash_metadata", sum[:], append(v, be64(created)...)); err != nil {
			return err
		}
	}
	id := joinS(m.Server, m.MediaID)
	meta := append(bytes.Clone(sum[:]), m.Filename...)
	meta = append(meta, sep)
	meta = append(meta, m.ContentType...)
	if m.UnauthenticatedAccess {
		meta = append(meta, sep)
	}
	// A media ID that pointed at other bytes loses its old file hash index row.
	if prev, ok, err := tx.get("servernamemediaid_metadata", id); err != nil {
		return err
	} else if ok && len(prev) >= 32 && !bytes.Equal(prev[:32], sum[:]) {
		if err := tx.del("filehash_servername_mediaid", append(bytes.Clone(prev[:32]), id...)); err != nil {
			return err
		}
	}
	if err := tx.set("servernamemediaid_metadata", id, meta); err != nil {
		return err
	}
	if err := tx.set("filehash_servername_mediaid", append(bytes.Clone(sum[:]), id...), []byte{}); err != nil {
		return err
	}
	if m.Uploader == "" {
		return nil
	}
	lp := localpart(m.Uploader)
	if err := tx.set("servername_userlocalpart_mediaid", joinS(m.Server, lp, m.MediaID), []byte{}); err != nil {
		return err
	}
	return tx.set("servernamemediaid_userlocalpart", id, []byte(lp))
}

// putLegacyMedia writes Conduit 0.9's mediaid_file row and its file, removing other rows of the
// same media ID (Conduit 0.9 serves the first row it finds).
func (tx *Tx) putLegacyMedia(m Media, tmp string, sum [32]byte) error {
	key := LegacyMediaKey(m)
	var stale [][]byte
	if err := tx.db.scan(tx.ctx, "mediaid_file", legacyMediaPrefix(m.Server, m.MediaID), func(k, _ []byte) error {
		if !bytes.Equal(k, key) {
			stale = append(stale, k)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := tx.placeFile(tmp, LegacyMediaPath(tx.db.mediaPath, key), sum); err != nil {
		return fmt.Errorf("conduit: media mxc://%s/%s: %w", m.Server, m.MediaID, err)
	}
	for _, k := range stale {
		if err := tx.del("mediaid_file", k); err != nil {
			return err
		}
	}
	return tx.set("mediaid_file", key, []byte{})
}

// writeTemp copies content to a new temporary file in dir, synced, and returns its sha256 and size.
func writeTemp(dir string, content io.Reader) (string, [32]byte, uint64, error) {
	var sum [32]byte
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", sum, 0, err
	}
	tmp := filepath.Join(dir, ".import-"+hex.EncodeToString(rnd[:])+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", sum, 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), content)
	if err == nil {
		err = f.Sync()
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err != nil {
		os.Remove(tmp)
		return "", sum, 0, err
	}
	copy(sum[:], h.Sum(nil))
	return tmp, sum, uint64(n), nil
}

// placeFile renames tmp to final unless final already holds the same bytes. A file with other
// bytes is moved aside until the Update commits, so that a failed Update (or a dry run) restores it.
func (tx *Tx) placeFile(tmp, final string, sum [32]byte) error {
	existed := false
	if got, err := fileSHA256(final); err == nil {
		if got == sum {
			return nil
		}
		existed = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if existed && !slices.Contains(tx.createdFiles, final) {
		if _, aside := tx.replacedFiles[final]; !aside {
			aside := tmp + ".previous"
			if err := atomicfile.Move(final, aside); err != nil {
				return err
			}
			if tx.replacedFiles == nil {
				tx.replacedFiles = map[string]string{}
			}
			tx.replacedFiles[final] = aside
		}
	}
	if err := atomicfile.Move(tmp, final); err != nil {
		return err
	}
	if !existed {
		tx.createdFiles = append(tx.createdFiles, final)
	}
	tx.changes.Files++
	return nil
}

func fileSHA256(path string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
