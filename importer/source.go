package importer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"filippo.io/age"

	"github.com/transition-matrix/transition-matrix/export"
)

// Export is a verified export directory: its manifest and the files it lists, each checked
// against the manifest's SHA-256 and size, decrypted and parsed once before anything is written.
type Export struct {
	Manifest *export.Manifest
	// Users are the user files' paths, sorted by user ID.
	Users []FileRef

	root       *os.Root
	identities []age.Identity
}

// FileRef is one exported file and what the manifest says of it.
type FileRef struct {
	Path string
	export.FileEntry
}

// ExportError is a refusal of the export directory, naming the file and what is wrong with it.
type ExportError struct {
	File   string // relative to the export directory; "" for the directory itself
	Reason string
}

func (e *ExportError) Error() string {
	if e.File == "" {
		return "export: " + e.Reason
	}
	return "export: " + e.File + ": " + e.Reason
}

func refuse(file, format string, args ...any) error {
	return &ExportError{File: file, Reason: fmt.Sprintf(format, args...)}
}

// OpenExport reads dir's manifest and verifies the whole export against it: the format version,
// the server name, every listed file's size and SHA-256, no user or room file that the manifest
// does not list, and every user and room file decrypted (with identities, for an age-encrypted
// export) and parsed. It changes nothing in dir. Close the result when done.
func OpenExport(dir, serverName string, identities []age.Identity) (*Export, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, refuse("", "%v", err)
	}
	if !st.IsDir() {
		return nil, refuse("", "%s is not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, refuse("", "%v", err)
	}
	x := &Export{root: root, identities: identities}
	if err := x.verify(serverName); err != nil {
		root.Close()
		return nil, err
	}
	return x, nil
}

// Close releases the directory.
func (x *Export) Close() error { return x.root.Close() }

const manifestName = "manifest.json"

func (x *Export) verify(serverName string) error {
	data, err := x.root.ReadFile(manifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return refuse(manifestName, "missing: this is not an export directory (run shim export first)")
	}
	if err != nil {
		return refuse(manifestName, "%v", err)
	}
	m := &export.Manifest{}
	if err := json.Unmarshal(data, m); err != nil {
		return refuse(manifestName, "not a valid manifest: %v", err)
	}
	switch {
	case m.Format != export.Format:
		return refuse(manifestName, "format %q, want %q", m.Format, export.Format)
	case m.FormatVersion != export.FormatVersion:
		return refuse(manifestName, "format version %d; this shim reads version %d", m.FormatVersion, export.FormatVersion)
	case m.ServerName != serverName:
		return refuse(manifestName, "export of %q, but the configuration's server_name is %q", m.ServerName, serverName)
	case !m.Complete || m.FinishedAt == nil:
		return refuse(manifestName, "the export is not complete: rerun shim export with the same -out to finish it")
	case len(m.Failed) > 0:
		return refuse(manifestName, "%d items failed to export (first: %s %s: %s): rerun shim export", len(m.Failed), m.Failed[0].Kind, m.Failed[0].ID, m.Failed[0].Reason)
	}
	if m.EncryptedTo != nil && len(x.identities) == 0 {
		return refuse("", "the export is encrypted to %s: pass the age identity file that decrypts it (-age-identity)", *m.EncryptedTo)
	}
	x.Manifest = m

	// Every file in users/ and rooms/ must be listed, and every listed file must be intact.
	for _, dir := range []string{"users", "rooms"} {
		entries, err := fs.ReadDir(x.root.FS(), dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return refuse(dir, "%v", err)
		}
		for _, e := range entries {
			p := dir + "/" + e.Name()
			if strings.HasPrefix(e.Name(), ".tmp-") {
				continue // a killed export's temporary file: never part of an export
			}
			if _, ok := m.Files[p]; !ok {
				return refuse(p, "not listed in the manifest (a file added after the export, or a manifest from another export)")
			}
		}
	}
	paths := make([]string, 0, len(m.Files))
	for p := range m.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	users, rooms := 0, 0
	for _, p := range paths {
		ent := m.Files[p]
		if err := x.checkEntry(p, ent); err != nil {
			return err
		}
		data, err := x.read(p, ent)
		if err != nil {
			return err
		}
		switch ent.Kind {
		case "user":
			if _, err := parseUser(p, ent, data, serverName); err != nil {
				return err
			}
			x.Users = append(x.Users, FileRef{Path: p, FileEntry: ent})
			users++
		case "room":
			var r struct {
				RoomID string `json:"room_id"`
			}
			if err := json.Unmarshal(data, &r); err != nil {
				return refuse(p, "not valid JSON: %v", err)
			}
			if r.RoomID != ent.ID {
				return refuse(p, "holds room %q, the manifest says %q", r.RoomID, ent.ID)
			}
			rooms++
		}
	}
	if users != m.Counts.UserFiles || rooms != m.Counts.RoomFiles {
		return refuse(manifestName, "lists %d user and %d room files, its counts say %d and %d", users, rooms, m.Counts.UserFiles, m.Counts.RoomFiles)
	}
	sort.Slice(x.Users, func(i, j int) bool { return x.Users[i].ID < x.Users[j].ID })
	return nil
}

// checkEntry checks that a manifest entry names a file the exporter could have written.
func (x *Export) checkEntry(p string, ent export.FileEntry) error {
	dir, name := path.Split(p)
	want := map[string]string{"user": "users/", "room": "rooms/"}[ent.Kind]
	if want == "" {
		return refuse(p, "unknown kind %q in the manifest", ent.Kind)
	}
	if dir != want {
		return refuse(p, "a %s file outside %s", ent.Kind, want)
	}
	stem, ok := strings.CutSuffix(name, ".json")
	if enc := x.Manifest.EncryptedTo != nil; enc {
		stem, ok = strings.CutSuffix(name, ".json.age")
	}
	if !ok {
		return refuse(p, "unexpected file name for this export (encrypted: %t)", x.Manifest.EncryptedTo != nil)
	}
	if !export.IsStemOf(stem, ent.ID) {
		return refuse(p, "file name does not encode the manifest's ID %q", ent.ID)
	}
	if len(ent.SHA256) != sha256.Size*2 {
		return refuse(p, "the manifest's sha256 %q is not a SHA-256", ent.SHA256)
	}
	return nil
}

// read returns a listed file's content (decrypted), after checking its size and SHA-256 against
// the manifest.
func (x *Export) read(p string, ent export.FileEntry) ([]byte, error) {
	f, err := x.root.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, refuse(p, "listed in the manifest but missing")
	}
	if err != nil {
		return nil, refuse(p, "%v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, refuse(p, "%v", err)
	}
	if !st.Mode().IsRegular() {
		return nil, refuse(p, "not a regular file")
	}
	if st.Size() != ent.Size {
		return nil, refuse(p, "%d bytes, the manifest says %d (truncated or changed after the export)", st.Size(), ent.Size)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, refuse(p, "reading: %v", err)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return nil, refuse(p, "grew while being read")
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != ent.SHA256 {
		return nil, refuse(p, "sha256 %s, the manifest says %s (the file was changed after the export)", got, ent.SHA256)
	}
	if !strings.HasSuffix(p, ".age") {
		return data, nil
	}
	r, err := age.Decrypt(bytes.NewReader(data), x.identities...)
	if err != nil {
		return nil, refuse(p, "cannot decrypt with the given identity: %v", err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		return nil, refuse(p, "decrypting: %v", err)
	}
	return plain, nil
}

// ReadUser reads, verifies again (the file may have changed since OpenExport) and parses a user file.
func (x *Export) ReadUser(ref FileRef) (*export.UserFile, error) {
	data, err := x.read(ref.Path, ref.FileEntry)
	if err != nil {
		return nil, err
	}
	return parseUser(ref.Path, ref.FileEntry, data, x.Manifest.ServerName)
}

// parseUser decodes a user file and checks it is the user the manifest says, on this server.
func parseUser(p string, ent export.FileEntry, data []byte, serverName string) (*export.UserFile, error) {
	u := &export.UserFile{}
	if err := json.Unmarshal(data, u); err != nil {
		return nil, refuse(p, "not a valid user file: %v", err)
	}
	if u.UID != ent.ID {
		return nil, refuse(p, "holds user %q, the manifest says %q", u.UID, ent.ID)
	}
	if !strings.HasPrefix(u.UID, "@") || serverOf(u.UID) != serverName {
		return nil, refuse(p, "%q is not a user of %s", u.UID, serverName)
	}
	return u, nil
}

// serverOf is the server name part of a Matrix ID.
func serverOf(id string) string {
	_, s, _ := strings.Cut(id, ":")
	return s
}
