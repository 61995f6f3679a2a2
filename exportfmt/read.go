package exportfmt

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"filippo.io/age"
)

// TempPrefix starts the names of files being written; a name with it is never part of an export.
const TempPrefix = ".tmp-"

// Suffix is the file name ending of user and room files: ".json", or ".json.age" when encrypted.
func Suffix(encrypted bool) string {
	if encrypted {
		return ".json.age"
	}
	return ".json"
}

// FilePath is where the file of a user or room (kind KindUser or KindRoom) lives in the export.
func FilePath(kind, id string, encrypted bool) string {
	dir := UsersDir
	if kind == KindRoom {
		dir = RoomsDir
	}
	return dir + "/" + Encode(id) + Suffix(encrypted)
}

// Errors of CheckPath and ReadEntry; each comes wrapped with what was found.
var (
	ErrBadEntry = errors.New("not a file the export writes")
	ErrMissing  = errors.New("listed in the manifest but missing")
	ErrChanged  = errors.New("changed after the export")
	ErrDecrypt  = errors.New("cannot decrypt with the given identity")
)

// CheckPath checks that a manifest entry names a file the exporter could have written: a known
// kind in its folder, the name encoding the entry's ID, and a SHA-256.
func CheckPath(p string, ent FileEntry, encrypted bool) error {
	dir, name := path.Split(p)
	want := map[string]string{KindUser: UsersDir + "/", KindRoom: RoomsDir + "/"}[ent.Kind]
	if want == "" {
		return fmt.Errorf("%w: unknown kind %q in the manifest", ErrBadEntry, ent.Kind)
	}
	if dir != want {
		return fmt.Errorf("%w: a %s file outside %s", ErrBadEntry, ent.Kind, want)
	}
	stem, ok := strings.CutSuffix(name, Suffix(encrypted))
	if !ok {
		return fmt.Errorf("%w: unexpected file name for this export (encrypted: %t)", ErrBadEntry, encrypted)
	}
	if !IsStemOf(stem, ent.ID) {
		return fmt.Errorf("%w: file name does not encode the manifest's ID %q", ErrBadEntry, ent.ID)
	}
	if len(ent.SHA256) != sha256.Size*2 {
		return fmt.Errorf("%w: the manifest's sha256 %q is not a SHA-256", ErrBadEntry, ent.SHA256)
	}
	return nil
}

// ReadEntry returns the content of the listed file p (decrypted with identities when it is an
// .age file) after checking its size and SHA-256 against ent.
func ReadEntry(fsys fs.FS, p string, ent FileEntry, identities ...age.Identity) ([]byte, error) {
	f, err := fsys.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrMissing
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrChanged)
	}
	if st.Size() != ent.Size {
		return nil, fmt.Errorf("%w: %d bytes, the manifest says %d (truncated or changed after the export)", ErrChanged, st.Size(), ent.Size)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return nil, fmt.Errorf("%w: grew while being read", ErrChanged)
	}
	if got := SHA256Hex(data); got != ent.SHA256 {
		return nil, fmt.Errorf("%w: sha256 %s, the manifest says %s (the file was changed after the export)", ErrChanged, got, ent.SHA256)
	}
	return Decrypt(p, data, identities...)
}

// Decrypt returns data as is, or decrypted with identities when name is an .age file.
func Decrypt(name string, data []byte, identities ...age.Identity) ([]byte, error) {
	if !strings.HasSuffix(name, ".age") {
		return data, nil
	}
	r, err := age.Decrypt(bytes.NewReader(data), identities...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	return plain, nil
}
