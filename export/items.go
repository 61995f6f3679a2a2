package export

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// item is one user or room to export.
type item struct {
	kind string
	id   string
	path string
	user synapseclient.UserSummary
	room synapseclient.RoomSummary
}

// prepare asks Synapse what there is, checks the directory and writes the starting manifest.
func (e *exporter) prepare(ctx context.Context) ([]item, error) {
	for _, d := range []string{".", exportfmt.UsersDir, exportfmt.RoomsDir} {
		if err := removeTemps(e.fsys, d); err != nil {
			return nil, fmt.Errorf("cleaning temporary files: %w", err)
		}
	}
	man, ok, err := readManifest(e.fsys)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := e.checkEmpty(); err != nil {
			return nil, err
		}
		man = &exportfmt.Manifest{Format: exportfmt.Format, FormatVersion: exportfmt.FormatVersion, ServerName: e.serverName, StartedAt: e.started.UTC(),
			Files: map[string]exportfmt.FileEntry{}}
		if e.cfg.EncryptTo != "" {
			r := e.cfg.EncryptTo
			man.EncryptedTo = &r
		}
	} else {
		if man.ServerName != e.serverName {
			return nil, fmt.Errorf("the directory holds an export of %q, not %q: use another directory", man.ServerName, e.serverName)
		}
		was, now := "", e.cfg.EncryptTo
		if man.EncryptedTo != nil {
			was = *man.EncryptedTo
		}
		if was != now {
			return nil, fmt.Errorf("the directory holds an export encrypted to %q, this run asks for %q: rerun with the same -encrypt-to, or use another directory", was, now)
		}
	}
	for _, d := range []string{exportfmt.UsersDir, exportfmt.RoomsDir} {
		if err := e.fsys.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}

	admin := e.cli.Admin()
	v, err := admin.Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("asking Synapse its version: %w", err)
	}
	if e.adminID, err = admin.AdminUserID(ctx); err != nil {
		return nil, fmt.Errorf("finding the admin token's user: %w", err)
	}
	if err := e.chooseClientPath(ctx); err != nil {
		return nil, err
	}
	keys, err := e.fedCallValue(ctx, func() (*synapseclient.ServerKeys, error) { return e.cli.Federation().ServerKeys(ctx) })
	if err != nil {
		return nil, fmt.Errorf("reading Synapse's published keys: %w", err)
	}
	users, err := admin.AllUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	search, err := admin.SearchUsers(ctx, ":"+e.serverName)
	if err != nil {
		return nil, fmt.Errorf("reading password hashes (search_users): %w", err)
	}
	e.passwordHashes = map[string]string{}
	for _, u := range search {
		e.passwordHashes[u.Name] = u.PasswordHash
	}
	rooms, err := admin.AllRooms(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing rooms: %w", err)
	}

	man.SynapseVersion = v.String()
	man.SigningKeyID = string(e.cfg.Synapse.Identity.SigningKey().ID)
	man.PublicKeys = map[string]exportfmt.PublicKey{}
	for id, k := range keys.VerifyKeys {
		man.PublicKeys[string(id)] = exportfmt.PublicKey{Key: k.Key}
	}
	for id, k := range keys.OldVerifyKeys {
		ts := k.ExpiredTS
		man.PublicKeys[string(id)] = exportfmt.PublicKey{Key: k.Key, ExpiredTS: &ts}
	}
	man.FinishedAt, man.Complete, man.Skipped, man.Failed = nil, false, []exportfmt.Skipped{}, []exportfmt.Skipped{}
	man.Counts = exportfmt.Counts{Users: len(users), Rooms: len(rooms)}

	encrypted := e.recipient != nil
	var items []item
	seen := map[string]bool{}
	for _, u := range users {
		if seen["u"+u.Name] {
			continue
		}
		seen["u"+u.Name] = true
		if u.Deactivated {
			man.Counts.UsersDeactivated++
		}
		if u.Admin {
			man.Counts.UsersAdmin++
		}
		if e.passwordHashes[u.Name] == "" {
			man.Counts.UsersWithoutPassword++
		}
		items = append(items, item{kind: exportfmt.KindUser, id: u.Name, path: exportfmt.FilePath(exportfmt.KindUser, u.Name, encrypted), user: u})
	}
	for _, r := range rooms {
		if seen["r"+r.RoomID] {
			continue
		}
		seen["r"+r.RoomID] = true
		if r.JoinedLocalMembers == 0 {
			man.Counts.RoomsWithoutLocalMembers++
		}
		items = append(items, item{kind: exportfmt.KindRoom, id: r.RoomID, path: exportfmt.FilePath(exportfmt.KindRoom, r.RoomID, encrypted), room: r})
	}
	// Files of users and rooms that are gone from the server since an earlier run go too.
	wanted := map[string]bool{}
	for _, it := range items {
		wanted[it.path] = true
	}
	for p := range man.Files {
		if !wanted[p] {
			delete(man.Files, p)
			if err := e.fsys.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("removing %s, no longer on the server: %w", p, err)
			}
			e.log.Warn("removed a file from an earlier run: no longer on the server", zap.String("file", p))
		}
	}
	e.man = man
	e.dirty = true
	e.progress.Users, e.progress.Rooms = man.Counts.Users, man.Counts.Rooms
	if err := e.flush(false); err != nil {
		return nil, err
	}
	return items, nil
}

// checkEmpty refuses a directory that holds anything but empty users/ and rooms/ folders when
// there is no manifest: it is not an export this command may add to.
func (e *exporter) checkEmpty() error {
	entries, err := e.fsys.ReadDir(".")
	if err != nil {
		return fmt.Errorf("reading the export directory: %w", err)
	}
	for _, ent := range entries {
		name := ent.Name()
		if (name == exportfmt.UsersDir || name == exportfmt.RoomsDir) && ent.IsDir() {
			sub, err := e.fsys.ReadDir(name)
			if err != nil {
				return fmt.Errorf("reading %s: %w", name, err)
			}
			if len(sub) == 0 {
				continue
			}
		}
		return fmt.Errorf("the export directory is not empty and has no %s (found %q): use an empty or new directory", exportfmt.ManifestName, name)
	}
	return nil
}

// resumable returns the items still to do; items the manifest records whose file is intact count
// as done.
func (e *exporter) resumable(items []item) []item {
	var pending []item
	for _, it := range items {
		ent, ok := e.man.Files[it.path]
		if ok && ent.Kind == it.kind && ent.ID == it.id {
			if data, err := e.fsys.ReadFile(it.path); err == nil && ent.Matches(data) {
				e.progress.Resumed++
				if it.kind == exportfmt.KindUser {
					e.progress.UsersDone++
				} else {
					e.progress.RoomsDone++
				}
				continue
			}
			e.log.Warn("file recorded in the manifest is missing or changed; exporting it again", zap.String("file", it.path))
		}
		delete(e.man.Files, it.path)
		pending = append(pending, it)
	}
	return pending
}

// schedule orders the items to export so that the workers stay busy: rooms spread evenly among
// the users, largest state first. A large room costs CPU (every PDU of its state and auth chain
// is checked) and holds a federation slot, a user costs a dozen short requests; mixed, the rooms'
// CPU work overlaps the users' waits instead of following them, workers rarely queue for the
// few federation slots, and no large room is left for the end with one worker on it.
func schedule(items []item) {
	var rooms, users []item
	for _, it := range items {
		if it.kind == exportfmt.KindRoom {
			rooms = append(rooms, it)
		} else {
			users = append(users, it)
		}
	}
	slices.SortStableFunc(rooms, func(a, b item) int { return cmp.Compare(b.room.StateEvents, a.room.StateEvents) })
	n := len(items)
	out := items[:0]
	for r, u := 0, 0; r+u < n; {
		// room r goes at position r*n/len(rooms); users fill the places between.
		if r < len(rooms) && (u == len(users) || (r*n)/len(rooms) <= r+u) {
			out = append(out, rooms[r])
			r++
		} else {
			out = append(out, users[u])
			u++
		}
	}
}
