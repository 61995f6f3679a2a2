package importer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"filippo.io/age"

	"github.com/transition-matrix/transition-matrix/exportfmt"
)

// Export is a verified export directory: its manifest and the files it lists, each checked
// against the manifest's SHA-256 and size, decrypted and parsed once before anything is written.
type Export struct {
	Manifest *exportfmt.Manifest
	// Users are the user files' paths, sorted by user ID.
	Users []FileRef

	root       *os.Root
	identities []age.Identity
}

// FileRef is one exported file and what the manifest says of it.
type FileRef struct {
	Path string
	exportfmt.FileEntry
}

// ExportError is a refusal of the export directory, naming the file and what is wrong with it.
type ExportError struct {
	File   string // relative to the export directory; "" for the directory itself
	Reason string
	Err    error // the exportfmt error behind Reason, if any
}

func (e *ExportError) Error() string {
	if e.File == "" {
		return "export: " + e.Reason
	}
	return "export: " + e.File + ": " + e.Reason
}

func (e *ExportError) Unwrap() error { return e.Err }

// refuseErr refuses file for err (from exportfmt), which errors.Is still finds.
func refuseErr(file string, err error) error {
	return &ExportError{File: file, Reason: err.Error(), Err: err}
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

func (x *Export) verify(serverName string) error {
	data, err := x.root.ReadFile(exportfmt.ManifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return refuse(exportfmt.ManifestName, "missing: this is not an export directory (run shim export first)")
	}
	if err != nil {
		return refuse(exportfmt.ManifestName, "%v", err)
	}
	m, err := exportfmt.ParseManifest(data)
	if err != nil {
		return refuseErr(exportfmt.ManifestName, err)
	}
	switch {
	case m.ServerName != serverName:
		return refuse(exportfmt.ManifestName, "export of %q, but the configuration's server_name is %q", m.ServerName, serverName)
	case !m.Complete || m.FinishedAt == nil:
		return refuse(exportfmt.ManifestName, "the export is not complete: rerun shim export with the same -out to finish it")
	case len(m.Failed) > 0:
		return refuse(exportfmt.ManifestName, "%d items failed to export (first: %s %s: %s): rerun shim export", len(m.Failed), m.Failed[0].Kind, m.Failed[0].ID, m.Failed[0].Reason)
	}
	if m.EncryptedTo != nil && len(x.identities) == 0 {
		return refuse("", "the export is encrypted to %s: pass the age identity file that decrypts it (-age-identity)", *m.EncryptedTo)
	}
	x.Manifest = m

	// Every file in users/ and rooms/ must be listed, and every listed file must be intact.
	for _, dir := range []string{exportfmt.UsersDir, exportfmt.RoomsDir} {
		entries, err := fs.ReadDir(x.root.FS(), dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return refuse(dir, "%v", err)
		}
		for _, e := range entries {
			p := dir + "/" + e.Name()
			if strings.HasPrefix(e.Name(), exportfmt.TempPrefix) {
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
		if err := exportfmt.CheckPath(p, ent, m.EncryptedTo != nil); err != nil {
			return refuseErr(p, err)
		}
		data, err := x.read(p, ent)
		if err != nil {
			return err
		}
		switch ent.Kind {
		case exportfmt.KindUser:
			if _, err := parseUser(p, ent, data, serverName); err != nil {
				return err
			}
			x.Users = append(x.Users, FileRef{Path: p, FileEntry: ent})
			users++
		case exportfmt.KindRoom:
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
		return refuse(exportfmt.ManifestName, "lists %d user and %d room files, its counts say %d and %d", users, rooms, m.Counts.UserFiles, m.Counts.RoomFiles)
	}
	sort.Slice(x.Users, func(i, j int) bool { return x.Users[i].ID < x.Users[j].ID })
	return nil
}

// read returns a listed file's content (decrypted), after checking its size and SHA-256 against
// the manifest.
func (x *Export) read(p string, ent exportfmt.FileEntry) ([]byte, error) {
	data, err := exportfmt.ReadEntry(x.root.FS(), p, ent, x.identities...)
	if err != nil {
		return nil, refuseErr(p, err)
	}
	return data, nil
}

// ReadUser reads, verifies again (the file may have changed since OpenExport) and parses a user file.
func (x *Export) ReadUser(ref FileRef) (*exportfmt.UserFile, error) {
	data, err := x.read(ref.Path, ref.FileEntry)
	if err != nil {
		return nil, err
	}
	return parseUser(ref.Path, ref.FileEntry, data, x.Manifest.ServerName)
}

// parseUser decodes a user file and checks it is the user the manifest says, on this server.
func parseUser(p string, ent exportfmt.FileEntry, data []byte, serverName string) (*exportfmt.UserFile, error) {
	u := &exportfmt.UserFile{}
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
