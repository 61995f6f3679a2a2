package preflight

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/transition-matrix/transition-matrix/roomversions"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// checkUsers counts the local accounts, and the active ones without a password hash.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-accounts
func (c *Checker) checkUsers(ctx context.Context, st *state) error {
	if !st.admin {
		return nil
	}
	users, err := c.Admin.AllUsers(ctx)
	if err != nil {
		return err
	}
	// search_users is the only admin API that still tells whether an account has a password.
	hashes, err := c.Admin.SearchUsers(ctx, ":")
	if err != nil {
		return err
	}
	hasPassword := make(map[string]bool, len(hashes))
	for _, h := range hashes {
		hasPassword[h.Name] = h.PasswordHash != ""
	}
	n := &UserCounts{Total: len(users)}
	var noPassword []string
	for _, u := range users {
		switch {
		case bool(u.Deactivated):
			n.Deactivated++
		default:
			n.Active++
			if !hasPassword[u.Name] {
				noPassword = append(noPassword, u.Name)
			}
		}
		if u.Admin {
			n.Admins++
		}
		if u.IsGuest {
			n.Guests++
		}
	}
	n.WithoutPassword = len(noPassword)
	st.r.Users = n
	st.r.add(Info, CodeUsers, "", "%d local users: %d active, %d deactivated, %d admins, %d guests, %d active without a password",
		n.Total, n.Active, n.Deactivated, n.Admins, n.Guests, n.WithoutPassword)
	switch {
	case len(noPassword) > 0 && st.mas:
		st.r.add(Info, CodeUsersWithoutPassword, "", "%s have no password in Synapse: on a MAS deployment the hashes are in MAS's database, and shim import conduit -mas-db carries them: %s",
			plural(len(noPassword), "active user"), listSome(noPassword, 10))
	case len(noPassword) > 0:
		st.r.add(Info, CodeUsersWithoutPassword, "", "%s without a password (single sign-on, application service or bot accounts) cannot log in to Conduit with one: %s",
			plural(len(noPassword), "active user"), listSome(noPassword, 10))
	}
	return nil
}

// listSome joins up to n items and says how many more there are.
func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

// roomLabel names a room for a message: its ID plus its alias or name when Synapse knows one.
func roomLabel(r synapseclient.RoomSummary) string {
	switch {
	case r.CanonicalAlias != nil && *r.CanonicalAlias != "":
		return r.RoomID + " (" + *r.CanonicalAlias + ")"
	case r.Name != nil && *r.Name != "":
		return fmt.Sprintf("%s (%q)", r.RoomID, *r.Name)
	}
	return r.RoomID
}

// checkRooms classifies every room by version (Conduit cannot host v1 and v2, hosts v3–v5 as
// unstable) and finds rooms no local user is joined to.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#list-room-api
func (c *Checker) checkRooms(ctx context.Context, st *state) error {
	if !st.admin {
		return nil
	}
	rooms, err := c.Admin.AllRooms(ctx)
	if err != nil {
		return err
	}
	st.rooms = rooms
	accepted := map[string]bool{}
	for _, id := range c.Accept {
		accepted[id] = true
	}
	used := map[string]bool{}
	n := &RoomCounts{Total: len(rooms), ByVersion: map[string]int{}, EventsEstimate: -1}
	for _, r := range rooms {
		version, note := r.Version, ""
		if version == "" {
			version, note = "1", " (Synapse records no version: the room predates room versions)"
		}
		n.ByVersion[version]++
		n.StateEvents += r.StateEvents
		switch roomversions.Of(version) {
		case roomversions.Unsupported:
			n.Unsupported++
			if accepted[r.RoomID] {
				used[r.RoomID] = true
				n.Accepted++
				f := st.r.add(Warning, CodeRoomVersionUnsupported, r.RoomID, "%s is a version %s room%s; Conduit cannot host it, and its loss is accepted (-accept)", roomLabel(r), version, note)
				f.Accepted = true
				break
			}
			st.r.add(Blocker, CodeRoomVersionUnsupported, r.RoomID, "%s is a version %s room%s, which Conduit cannot host: upgrade it (/upgraderoom in a client) or accept its loss with -accept %s", roomLabel(r), version, note, r.RoomID)
		case roomversions.Unstable:
			n.Unstable++
			st.r.add(Warning, CodeRoomVersionUnstable, r.RoomID, "%s is a version %s room, which Conduit hosts only as an unstable version (allow_unstable_room_versions must stay true); consider upgrading it", roomLabel(r), version)
		case roomversions.Unknown:
			st.r.add(Warning, CodeRoomVersionUnknown, r.RoomID, "%s has room version %q, which Conduit does not list: it may not be able to host it", roomLabel(r), version)
		}
		if r.JoinedLocalMembers == 0 {
			n.NoLocalMember++
			st.r.add(Warning, CodeRoomNoLocalMember, r.RoomID, "no local user is joined to %s: Synapse answers federation requests about it with 403 \"Host not in room\", so its history cannot be served to Conduit (the export keeps its state from the admin API)", roomLabel(r))
		}
	}
	for _, id := range c.Accept {
		if !used[id] {
			st.r.add(Warning, CodeAcceptUnused, id, "-accept %s names no room of version 1 or 2 on this server", id)
		}
	}
	st.r.Rooms = n
	st.r.add(Info, CodeRooms, "", "%d rooms (%s); %d with no local member", n.Total, versionCounts(n.ByVersion, "v%s: %d"), n.NoLocalMember)
	return nil
}

// sortVersions orders room versions numerically, non-numeric ones last.
// versionCounts lists the rooms per version, lowest version first, each as format gives it.
func versionCounts(byVersion map[string]int, format string) string {
	versions := make([]string, 0, len(byVersion))
	for v := range byVersion {
		versions = append(versions, v)
	}
	sortVersions(versions)
	parts := make([]string, 0, len(versions))
	for _, v := range versions {
		parts = append(parts, fmt.Sprintf(format, v, byVersion[v]))
	}
	return strings.Join(parts, ", ")
}

func sortVersions(vs []string) {
	num := func(s string) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, s != ""
	}
	sort.Slice(vs, func(i, j int) bool {
		a, aok := num(vs[i])
		b, bok := num(vs[j])
		if aok != bok {
			return aok
		}
		if aok {
			return a < b
		}
		return vs[i] < vs[j]
	})
}

// checkMedia adds up the users' media statistics.
// https://element-hq.github.io/synapse/latest/admin_api/statistics.html#users-media-usage-statistics
func (c *Checker) checkMedia(ctx context.Context, st *state) error {
	if !st.admin {
		return nil
	}
	t, err := c.Admin.LocalMediaTotals(ctx)
	if err != nil {
		if he, ok := httpError(err); ok && he.Status == 404 && he.ErrCode == "M_UNRECOGNIZED" {
			const endpoint = "GET /_synapse/admin/v1/statistics/users/media"
			st.r.add(Info, CodeMedia, endpoint, "Synapse %s does not offer media statistics (%s); local media not counted", st.r.SynapseVersion, endpoint)
			return nil
		}
		return err
	}
	st.r.Media = &MediaCounts{Users: t.Users, Files: t.Count, Bytes: t.Bytes}
	st.r.add(Info, CodeMedia, "", "%d local media files, %s, uploaded by %d users (copy Synapse's media_store_path to move them)", t.Count, formatBytes(uint64(t.Bytes)), t.Users)
	return nil
}
