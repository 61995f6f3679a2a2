package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"filippo.io/age"
	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/signing"
)

// ExportDir reads an export written by `shim export`: its rooms (current state, local members,
// forward extremities) and its users, each file checked against the manifest's SHA-256.
type ExportDir struct {
	Manifest *exportfmt.Manifest
	root     *os.Root
	ids      []age.Identity
	rooms    map[string]string // room ID → path
	users    map[string]string // user ID → path
}

// OpenExport opens dir and reads its manifest. identities decrypt an encrypted export (files
// ending in .age); an encrypted export without them is refused.
func OpenExport(dir string, identities ...age.Identity) (*ExportDir, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	data, err := root.ReadFile(exportfmt.ManifestName)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("export %s: no manifest (%w): is this a directory `shim export` wrote?", dir, err)
	}
	m, err := exportfmt.ParseManifest(data)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("export %s: %s: %w", dir, exportfmt.ManifestName, err)
	}
	if !m.Complete {
		root.Close()
		return nil, fmt.Errorf("export %s is not complete (finish it by rerunning `shim export` with the same directory)", dir)
	}
	if m.EncryptedTo != nil && len(identities) == 0 {
		root.Close()
		return nil, fmt.Errorf("export %s is encrypted to %s: give the age identity file that decrypts it", dir, *m.EncryptedTo)
	}
	e := &ExportDir{Manifest: m, root: root, ids: identities, rooms: map[string]string{}, users: map[string]string{}}
	for path, f := range m.Files {
		switch f.Kind {
		case exportfmt.KindRoom:
			e.rooms[f.ID] = path
		case exportfmt.KindUser:
			e.users[f.ID] = path
		}
	}
	return e, nil
}

// Close releases the directory.
func (e *ExportDir) Close() error { return e.root.Close() }

// read returns a file's JSON after checking it against the manifest and decrypting it.
func (e *ExportDir) read(path string) ([]byte, error) {
	data, err := exportfmt.ReadEntry(e.root.FS(), path, e.Manifest.Files[path], e.ids...)
	if err != nil {
		return nil, fmt.Errorf("export file %s: %w", path, err)
	}
	return data, nil
}

// RoomFile reads one room's file.
func (e *ExportDir) RoomFile(roomID string) (*exportfmt.RoomFile, error) {
	path, ok := e.rooms[roomID]
	if !ok {
		return nil, fmt.Errorf("the export has no room %s", roomID)
	}
	data, err := e.read(path)
	if err != nil {
		return nil, err
	}
	var r exportfmt.RoomFile
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("export file %s: %w", path, err)
	}
	if r.RoomID != roomID {
		return nil, fmt.Errorf("export file %s holds room %q, the manifest says %q", path, r.RoomID, roomID)
	}
	return &r, nil
}

// RoomIDs implements Rooms: every exported room.
func (e *ExportDir) RoomIDs(context.Context) ([]string, error) { return sortedKeys(e.rooms), nil }

// Room implements Rooms: the room with the state and members it had at export time.
func (e *ExportDir) Room(_ context.Context, roomID string) (Room, error) {
	f, err := e.RoomFile(roomID)
	if err != nil {
		return Room{RoomID: roomID}, err
	}
	r, err := roomFromExport(f)
	if err != nil {
		return r, fmt.Errorf("room %s in the export: %w", roomID, err)
	}
	return r, nil
}

// roomFromExport turns a room file into what verify compares.
func roomFromExport(f *exportfmt.RoomFile) (Room, error) {
	r := Room{RoomID: f.RoomID, RoomVersion: f.RoomVersion, Heads: f.ForwardExtremities}
	for uid, m := range f.LocalMembers {
		if m == "join" {
			r.JoinedLocalMembers = append(r.JoinedLocalMembers, uid)
		}
	}
	sort.Strings(r.JoinedLocalMembers)
	switch f.StateFormat {
	case exportfmt.StateClient:
		st, err := stateFromClientEvents(f.State)
		if err != nil {
			return r, err
		}
		r.State = st
	default:
		r.State = make(map[StateKey]string, len(f.State))
		for _, pdu := range f.State {
			id, err := signing.EventID(f.RoomVersion, pdu)
			if err != nil {
				return r, fmt.Errorf("state event: %w", err)
			}
			p := gjson.ParseBytes(pdu)
			r.State[StateKey{p.Get("type").String(), p.Get("state_key").String()}] = id
		}
	}
	return r, nil
}

// UserIDs implements Users.
func (e *ExportDir) UserIDs(context.Context) ([]string, error) { return sortedKeys(e.users), nil }

// User implements Users.
func (e *ExportDir) User(_ context.Context, userID string) (*exportfmt.UserFile, error) {
	path, ok := e.users[userID]
	if !ok {
		return nil, fmt.Errorf("the export has no user %s", userID)
	}
	data, err := e.read(path)
	if err != nil {
		return nil, err
	}
	var u exportfmt.UserFile
	if err := json.Unmarshal(data, &u); err != nil {
		return nil, fmt.Errorf("export file %s: %w", path, err)
	}
	if u.UID != userID {
		return nil, fmt.Errorf("export file %s holds user %q, the manifest says %q", path, u.UID, userID)
	}
	return &u, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
