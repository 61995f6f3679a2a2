// Package preflight checks a running Synapse before it is moved to Conduit: each check is a small
// function that returns findings (blockers, warnings, information), and a Report gathers them
// with the server's counts and the exit status `shim check` ends with.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/transition-matrix/transition-matrix/roomversions"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// Severity says whether a finding stops the migration.
type Severity string

// Severities, from the one that stops the migration to the one that only informs.
const (
	Blocker Severity = "blocker"
	Warning Severity = "warning"
	Info    Severity = "info"
)

// Finding codes: stable names for machines; messages may change, codes do not.
const (
	CodeNoAdminAccess           = "no_admin_access"             // blocker: the token is not a server admin's (or is refused)
	CodeSynapseVersion          = "synapse_version"             // info: the version and where it came from
	CodeAdminEndpointMissing    = "admin_endpoint_missing"      // blocker for endpoints the export needs, info otherwise
	CodeUsers                   = "users"                       // info: user counts
	CodeUsersWithoutPassword    = "users_without_password"      // info: active users who cannot log in by password
	CodeRooms                   = "rooms"                       // info: room counts by version
	CodeRoomVersionUnsupported  = "room_version_unsupported"    // blocker (v1, v2) unless accepted
	CodeRoomVersionUnstable     = "room_version_unstable"       // warning: v3–v5, which Conduit hosts as unstable
	CodeRoomVersionUnknown      = "room_version_unknown"        // warning: a version Conduit does not list
	CodeRoomNoLocalMember       = "room_no_local_member"        // warning: federation answers 403 for the room
	CodeAcceptUnused            = "accept_unused"               // warning: -accept names a room that needs no acceptance
	CodeMedia                   = "media"                       // info: local media counts
	CodeSigningKeyOK            = "signing_key_ok"              // info: the configured key is the published one
	CodeSigningKeyMismatch      = "signing_key_mismatch"        // blocker
	CodeServerNameMismatch      = "server_name_mismatch"        // blocker: Synapse publishes keys for another name
	CodePublishedKeyNotInConfig = "published_key_not_in_config" // warning: a key Synapse publishes that the shim lacks
	CodeFederationSelfAccepted  = "federation_self_accepted"    // info, with the rc_federation advice
	CodeFederationSelfRefused   = "federation_self_refused"     // blocker
	CodeFederationRateLimited   = "federation_rate_limited"     // warning, with the rc_federation advice
	CodeDiskSpace               = "disk_space"                  // info: free space and the estimate
	CodeDiskSpaceLow            = "disk_space_low"              // warning: free space under twice the estimate
	CodeDiskSpaceUnknown        = "disk_space_unknown"          // info: the free space could not be read
	CodeMASDeployment           = "mas_deployment"              // warning: logins are handed to MAS; what is and is not carried
	CodeLoginAsRefused          = "login_as_refused"            // warning: login-as refused without MAS; export needs -synapse-db
	CodeCompromisedKey          = "compromised_signing_key"     // blocker: a current or old key whose private half is public
)

// rcFederationAdvice is what to tell the operator about Synapse's federation rate limit.
const rcFederationAdvice = "the shim's requests all count against one origin, so raise rc_federation in homeserver.yaml for the migration (e.g. window_size 1000, sleep_limit 1000, reject_limit 10000, concurrent 100) and restart Synapse"

// Finding is one result of a check. Subject names what it is about (a room ID, a key ID, an
// endpoint, a path) when there is one thing.
type Finding struct {
	Severity Severity `json:"severity"`
	Code     string   `json:"code"`
	Subject  string   `json:"subject,omitempty"`
	Message  string   `json:"message"`
	// Accepted marks a blocker the operator accepted with -accept; it counts as a warning.
	Accepted bool `json:"accepted,omitempty"`
}

// CheckError is a check that could not run: the report is incomplete.
type CheckError struct {
	Check string `json:"check"`
	Error string `json:"error"`
}

// Endpoint is one admin API endpoint the migration uses and whether this Synapse offers it.
type Endpoint struct {
	Name      string `json:"name"`
	Path      string `json:"path"`
	Since     string `json:"since"`
	Required  bool   `json:"required"`
	Available bool   `json:"available"`
	UsedFor   string `json:"used_for"`
}

// UserCounts are the local accounts; WithoutPassword counts active accounts only.
type UserCounts struct {
	Total           int `json:"total"`
	Active          int `json:"active"`
	Deactivated     int `json:"deactivated"`
	Admins          int `json:"admins"`
	Guests          int `json:"guests"`
	WithoutPassword int `json:"without_password"`
}

// RoomCounts are the rooms Synapse knows, by version; EventsEstimate is the sum of the newest
// depths of the rooms a local user is joined to (what the archive will fetch, roughly), or -1 when
// it was not estimated.
type RoomCounts struct {
	Total          int            `json:"total"`
	ByVersion      map[string]int `json:"by_version"`
	Unsupported    int            `json:"unsupported"`
	Accepted       int            `json:"accepted"`
	Unstable       int            `json:"unstable"`
	NoLocalMember  int            `json:"no_local_member"`
	StateEvents    int            `json:"state_events"`
	EventsEstimate int64          `json:"events_estimate"`
}

// MediaCounts are the local uploads, from the users' media statistics.
type MediaCounts struct {
	Users int   `json:"users"`
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Disk is the free space where the export or the cache will be written.
type Disk struct {
	Purpose string `json:"purpose"` // "export" or "cache"
	Path    string `json:"path"`
	// Checked is the existing folder whose file system was measured (Path or its nearest parent).
	Checked   string `json:"checked"`
	FreeBytes uint64 `json:"free_bytes"`
	// EstimateBytes is what the export or cache will take, roughly; 0 when unknown.
	EstimateBytes uint64 `json:"estimate_bytes"`
	// SharedWith names the other purpose when both are on one file system (their estimates add up).
	SharedWith string `json:"shared_with,omitempty"`
}

// Report is the outcome of a check run. ExitStatus is 0 with no blockers, 1 with blockers, 2 when
// a check could not run (the report is then incomplete, whatever it found).
type Report struct {
	ServerName     string       `json:"server_name"`
	SynapseURL     string       `json:"synapse_url,omitempty"`
	SynapseVersion string       `json:"synapse_version"`
	AdminUser      string       `json:"admin_user,omitempty"`
	Endpoints      []Endpoint   `json:"endpoints"`
	Users          *UserCounts  `json:"users"`
	Rooms          *RoomCounts  `json:"rooms"`
	Media          *MediaCounts `json:"media"`
	Disk           []Disk       `json:"disk"`
	Findings       []Finding    `json:"findings"`
	Errors         []CheckError `json:"errors"`
	Blockers       int          `json:"blockers"`
	Warnings       int          `json:"warnings"`
	ExitStatus     int          `json:"exit_status"`
}

// Admin is the part of Synapse's admin API the checks read; *synapseclient.AdminClient has it.
type Admin interface {
	ServerVersion(ctx context.Context) (*synapseclient.ServerVersionInfo, error)
	AdminUserID(ctx context.Context) (string, error)
	AllUsers(ctx context.Context) ([]synapseclient.UserSummary, error)
	SearchUsers(ctx context.Context, term string) ([]synapseclient.SearchUser, error)
	AllRooms(ctx context.Context) ([]synapseclient.RoomSummary, error)
	ForwardExtremities(ctx context.Context, roomID string) ([]synapseclient.ForwardExtremity, error)
	LocalMediaTotals(ctx context.Context) (*synapseclient.MediaTotals, error)
}

// Federation is the part of Synapse's federation API the checks read; *synapseclient.FederationClient has it.
type Federation interface {
	Version(ctx context.Context) (*synapseclient.FederationVersion, error)
	ServerKeys(ctx context.Context) (*synapseclient.ServerKeys, error)
	QueryProfile(ctx context.Context, userID, field string) (*synapseclient.Profile, error)
}

var (
	_ Admin      = (*synapseclient.AdminClient)(nil)
	_ Federation = (*synapseclient.FederationClient)(nil)
)

// Checker runs the checks against one Synapse.
type Checker struct {
	Admin      Admin
	Federation Federation
	// Identity is the configured server name and signing keys.
	Identity *signing.Identity
	// SynapseURL is shown in the report and in the unreachable error.
	SynapseURL string
	// Accept lists rooms whose loss the operator accepts: their unsupported version is no blocker.
	Accept []string
	// ExportDir and CachePath are checked for free space; "" skips one.
	ExportDir, CachePath string
	// Statfs reads the free space of a folder's file system (default: the operating system's).
	Statfs func(path string) (FS, error)
	// Concurrency bounds the forward-extremity requests of the event estimate (default 4).
	Concurrency int
	// MAS is set when homeserver.yaml hands logins to the Matrix Authentication Service.
	MAS *MAS
}

// ErrUnreachable is returned by Run when Synapse does not answer at all.
var ErrUnreachable = errors.New("synapse unreachable")

// state carries what earlier checks learned to later ones.
type state struct {
	r       *Report
	admin   bool
	version synapseclient.Version
	rooms   []synapseclient.RoomSummary
	keys    *synapseclient.ServerKeys // what Synapse publishes, once checkSigningKey fetched it
	mas     bool                      // logins are handed to the Matrix Authentication Service
}

// Run runs every check. It returns an error wrapping ErrUnreachable (and no report) when Synapse's
// client API does not answer; any other failure of a check is listed in Report.Errors.
func (c *Checker) Run(ctx context.Context) (*Report, error) {
	if c.Admin == nil || c.Federation == nil || c.Identity == nil || len(c.Identity.Keys) == 0 {
		return nil, errors.New("preflight: Checker needs Admin, Federation and an Identity with a signing key")
	}
	r := &Report{ServerName: c.Identity.ServerName, SynapseURL: c.SynapseURL, Endpoints: []Endpoint{},
		Disk: []Disk{}, Findings: []Finding{}, Errors: []CheckError{}}
	st := &state{r: r}
	if err := c.checkAccess(ctx, st); err != nil {
		return nil, err
	}
	checks := []struct {
		name string
		run  func(context.Context, *state) error
	}{
		{"version", c.checkVersion},
		{"auth", c.checkAuth},
		{"users", c.checkUsers},
		{"rooms", c.checkRooms},
		{"media", c.checkMedia},
		{"signing key", c.checkSigningKey},
		{"compromised key", c.checkCompromisedKey},
		{"federation", c.checkSelfFederation},
		{"disk", c.checkDisk},
	}
	for _, ch := range checks {
		if err := ch.run(ctx, st); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r.Errors = append(r.Errors, CheckError{Check: ch.name, Error: err.Error()})
		}
	}
	r.finish()
	return r, nil
}

func (r *Report) add(sev Severity, code, subject, format string, args ...any) *Finding {
	r.Findings = append(r.Findings, Finding{Severity: sev, Code: code, Subject: subject, Message: fmt.Sprintf(format, args...)})
	return &r.Findings[len(r.Findings)-1]
}

var severityRank = map[Severity]int{Blocker: 0, Warning: 1, Info: 2}

// finish orders the findings (blockers first, each kind in check order) and sets the totals.
func (r *Report) finish() {
	sort.SliceStable(r.Findings, func(i, j int) bool {
		return severityRank[r.Findings[i].Severity] < severityRank[r.Findings[j].Severity]
	})
	r.Blockers, r.Warnings = 0, 0
	for _, f := range r.Findings {
		switch f.Severity {
		case Blocker:
			r.Blockers++
		case Warning:
			r.Warnings++
		}
	}
	switch {
	case len(r.Errors) > 0:
		r.ExitStatus = 2
	case r.Blockers > 0:
		r.ExitStatus = 1
	default:
		r.ExitStatus = 0
	}
}

// httpError returns Synapse's answer inside err, if it answered at all.
func httpError(err error) (*synapseclient.Error, bool) {
	var e *synapseclient.Error
	ok := errors.As(err, &e)
	return e, ok
}

// checkAccess asks the admin server_version endpoint: it proves Synapse answers, and whether the
// token is a server admin's.
// https://element-hq.github.io/synapse/latest/admin_api/version_api.html
func (c *Checker) checkAccess(ctx context.Context, st *state) error {
	info, err := c.Admin.ServerVersion(ctx)
	if err == nil {
		st.admin = true
		if v, perr := synapseclient.ParseVersion(info.ServerVersion); perr == nil {
			st.version = v
			st.r.SynapseVersion = info.ServerVersion
		}
		if id, err := c.Admin.AdminUserID(ctx); err == nil {
			st.r.AdminUser = id
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	he, answered := httpError(err)
	if !answered {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.SynapseURL, err)
	}
	who := "synapse.admin_token"
	if id, err := c.Admin.AdminUserID(ctx); err == nil {
		who = "synapse.admin_token (a token of " + id + ")"
		st.r.AdminUser = id
	}
	switch he.Status {
	case 401:
		st.r.add(Blocker, CodeNoAdminAccess, "synapse.admin_token", "Synapse refuses synapse.admin_token (%s: %s): set it to a valid access token of a server admin", he.ErrCode, he.Message)
	case 403:
		st.r.add(Blocker, CodeNoAdminAccess, "synapse.admin_token", "%s is not a server admin's (%s): the export and this check need the admin API; make the user an admin or use another token", who, he.Message)
	default:
		const endpoint = "GET /_synapse/admin/v1/server_version"
		st.r.add(Blocker, CodeNoAdminAccess, endpoint, "the admin API answers %s with HTTP %d %s %s: it must be reachable on synapse.url (the main process's client listener, not a worker)", endpoint, he.Status, he.ErrCode, he.Message)
	}
	return nil
}

// endpoints are the admin API endpoints the migration uses, with the Synapse release that added them.
var endpoints = []Endpoint{
	{Name: "list users", Path: "GET /_synapse/admin/v2/users", Since: "1.7.0", Required: true, UsedFor: "check, export"},
	{Name: "rooms with versions", Path: "GET /_synapse/admin/v1/rooms", Since: "1.13.0", Required: true, UsedFor: "check, export"},
	{Name: "login as a user", Path: "POST /_synapse/admin/v1/users/{userId}/login", Since: "1.24.0", Required: true, UsedFor: "export (per-user data)"},
	{Name: "room state", Path: "GET /_synapse/admin/v1/rooms/{roomId}/state", Since: "1.27.0", Required: true, UsedFor: "export (rooms with no local member)"},
	{Name: "forward extremities", Path: "GET /_synapse/admin/v1/rooms/{roomId}/forward_extremities", Since: "1.27.0", Required: true, UsedFor: "export, archive"},
	{Name: "account data", Path: "GET /_synapse/admin/v1/users/{userId}/accountdata", Since: "1.50.0", Required: true, UsedFor: "export"},
	{Name: "room messages (raw)", Path: "GET /_synapse/admin/v1/rooms/{roomId}/messages", Since: synapseclient.VersionAdminRoomMessages.String(), UsedFor: "history without the federation visibility filter"},
	{Name: "fetch_event", Path: "GET /_synapse/admin/v1/fetch_event/{eventId}", Since: synapseclient.VersionFetchEvent.String(), UsedFor: "single events without the federation visibility filter"},
}

// versionSelfKeyLocal is the first Synapse that verifies requests signed as itself with its own
// keys, without asking key servers.
var versionSelfKeyLocal = synapseclient.Version{Major: 1, Minor: 47}

// checkVersion finds Synapse's version (the federation /version when the admin API refused) and
// lists which admin endpoints it offers.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1version
func (c *Checker) checkVersion(ctx context.Context, st *state) error {
	source := "admin API"
	if st.version.IsZero() {
		v, err := c.Federation.Version(ctx)
		if err != nil {
			return fmt.Errorf("finding Synapse's version: %w", err)
		}
		pv, err := synapseclient.ParseVersion(v.Server.Version)
		if err != nil {
			return fmt.Errorf("finding Synapse's version: federation /version names %s %q: %w", v.Server.Name, v.Server.Version, err)
		}
		if v.Server.Name != "" && !strings.EqualFold(v.Server.Name, "Synapse") {
			st.r.add(Warning, CodeSynapseVersion, v.Server.Name, "the server at %s says it is %s %s, not Synapse", c.SynapseURL, v.Server.Name, v.Server.Version)
		}
		st.version, st.r.SynapseVersion, source = pv, v.Server.Version, "federation /version"
	}
	st.r.add(Info, CodeSynapseVersion, st.r.SynapseVersion, "Synapse %s (from the %s)", st.r.SynapseVersion, source)
	for _, e := range endpoints {
		need, _ := synapseclient.ParseVersion(e.Since)
		e.Available = st.version.AtLeast(need)
		st.r.Endpoints = append(st.r.Endpoints, e)
		if e.Available {
			continue
		}
		if e.Required {
			st.r.add(Blocker, CodeAdminEndpointMissing, e.Path, "Synapse %s lacks %s (%s, from %s), which the %s needs: upgrade Synapse first", st.r.SynapseVersion, e.Name, e.Path, e.Since, e.UsedFor)
		} else {
			st.r.add(Info, CodeAdminEndpointMissing, e.Path, "Synapse %s lacks %s (%s, from %s), used for %s; the migration works without it", st.r.SynapseVersion, e.Name, e.Path, e.Since, e.UsedFor)
		}
	}
	return nil
}

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
	versions := make([]string, 0, len(n.ByVersion))
	for v := range n.ByVersion {
		versions = append(versions, v)
	}
	sortVersions(versions)
	parts := make([]string, 0, len(versions))
	for _, v := range versions {
		parts = append(parts, fmt.Sprintf("v%s: %d", v, n.ByVersion[v]))
	}
	st.r.add(Info, CodeRooms, "", "%d rooms (%s); %d with no local member", n.Total, strings.Join(parts, ", "), n.NoLocalMember)
	return nil
}

// sortVersions orders room versions numerically, non-numeric ones last.
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

// checkSigningKey compares the configured signing key with the key document Synapse publishes.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixkeyv2server
func (c *Checker) checkSigningKey(ctx context.Context, st *state) error {
	doc, err := c.Federation.ServerKeys(ctx)
	if err != nil {
		return fmt.Errorf("fetching /_matrix/key/v2/server: %w", err)
	}
	st.keys = doc
	id := c.Identity
	if doc.ServerName != id.ServerName {
		st.r.add(Blocker, CodeServerNameMismatch, doc.ServerName, "Synapse publishes keys for %q, but the configured server name is %q: synapse.url points at another server, or server_name is wrong", doc.ServerName, id.ServerName)
		return nil
	}
	key := id.SigningKey()
	pub := signing.EncodeBase64(key.PublicKey())
	published := make([]string, 0, len(doc.VerifyKeys))
	for kid := range doc.VerifyKeys {
		published = append(published, string(kid))
	}
	sort.Strings(published)
	vk, current := doc.VerifyKeys[key.ID]
	old, retired := doc.OldVerifyKeys[key.ID]
	switch {
	case current && vk.Key == pub:
		if err := signing.VerifyJSON(id.ServerName, key.ID, key.PublicKey(), doc.Raw); err != nil {
			st.r.add(Blocker, CodeSigningKeyMismatch, string(key.ID), "Synapse publishes the configured key %s, but its key document does not carry a valid signature by it (%v): something between the shim and Synapse alters it", key.ID, err)
		} else {
			st.r.add(Info, CodeSigningKeyOK, string(key.ID), "the configured signing key %s is the one Synapse publishes", key.ID)
		}
	case current:
		st.r.add(Blocker, CodeSigningKeyMismatch, string(key.ID), "Synapse publishes %s with public key %s, but the configured key under that ID has public key %s: signing_key_path (or synapse_config) must be Synapse's own key file", key.ID, vk.Key, pub)
	case retired && old.Key == pub:
		st.r.add(Blocker, CodeSigningKeyMismatch, string(key.ID), "the configured key %s is one Synapse retired (expired %s); Synapse now signs with %s: use Synapse's current key file", key.ID, time.UnixMilli(old.ExpiredTS).UTC().Format(time.RFC3339), strings.Join(published, ", "))
	default:
		st.r.add(Blocker, CodeSigningKeyMismatch, string(key.ID), "Synapse publishes %s, not the configured key %s: signing_key_path (or synapse_config) must be Synapse's own key file", strings.Join(published, ", "), key.ID)
	}
	c.checkPublishedKeysConfigured(st, doc)
	return nil
}

// checkPublishedKeysConfigured warns about keys Synapse publishes that the configuration lacks:
// events signed by them would not verify on Conduit unless their public keys travel too.
func (c *Checker) checkPublishedKeysConfigured(st *state, doc *synapseclient.ServerKeys) {
	id := c.Identity
	have := map[signing.KeyID]string{}
	for _, k := range id.Keys {
		have[k.ID] = signing.EncodeBase64(k.PublicKey())
	}
	for _, k := range id.OldKeys {
		have[k.ID] = signing.EncodeBase64(k.Public)
	}
	var ids []signing.KeyID
	for kid := range doc.VerifyKeys {
		ids = append(ids, kid)
	}
	for kid := range doc.OldVerifyKeys {
		if _, dup := doc.VerifyKeys[kid]; !dup {
			ids = append(ids, kid)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, kid := range ids {
		if kid == id.SigningKey().ID {
			continue
		}
		want, isOld := doc.VerifyKeys[kid].Key, false
		if v, ok := doc.OldVerifyKeys[kid]; ok {
			want, isOld = v.Key, true
		}
		if have[kid] == want {
			continue
		}
		kind := "current key"
		if isOld {
			kind = "old key"
		}
		st.r.add(Warning, CodePublishedKeyNotInConfig, string(kid), "Synapse publishes the %s %s, which the configuration lacks: events it signed will not verify on Conduit; point synapse_config at homeserver.yaml so its old_signing_keys come along", kind, kid)
	}
}

// checkSelfFederation sends one federation request signed as Synapse itself (a profile query,
// the cheapest authenticated read) and sorts Synapse's answer into accepted, refused or limited.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1queryprofile
func (c *Checker) checkSelfFederation(ctx context.Context, st *state) error {
	user := st.r.AdminUser
	if user == "" {
		user = "@transition-matrix-preflight:" + c.Identity.ServerName
	}
	const endpoint = "GET /_matrix/federation/v1/query/profile"
	_, err := c.Federation.QueryProfile(ctx, user, "displayname")
	he, answered := httpError(err)
	// Synapse authenticates a request before anything else, and answers 401 (signature) or 403
	// "Federation denied" (federation_domain_whitelist) when that fails; a 404 for the profile or
	// another 403 (e.g. allow_profile_lookup_over_federation: false) come after the signature passed.
	accepted := err == nil || answered && ((he.Status == 404 && he.ErrCode == "M_NOT_FOUND") ||
		(he.Status == 403 && !strings.HasPrefix(he.Message, "Federation denied")))
	switch {
	case accepted:
		st.r.add(Info, CodeFederationSelfAccepted, endpoint, "Synapse accepts federation requests signed as %s with %s (%s); %s", c.Identity.ServerName, c.Identity.SigningKey().ID, endpoint, rcFederationAdvice)
	case errors.Is(err, synapseclient.ErrRateLimited):
		st.r.add(Warning, CodeFederationRateLimited, endpoint, "Synapse rate-limits federation requests from %s already (%s: HTTP 429 after retries): %s", c.Identity.ServerName, endpoint, rcFederationAdvice)
	case !answered || he.Status >= 500:
		return fmt.Errorf("sending a federation request signed as %s: %w", c.Identity.ServerName, err)
	case he.Status == 403:
		st.r.add(Blocker, CodeFederationSelfRefused, endpoint, "Synapse refuses federation requests from its own name (%s: %s): federation_domain_whitelist in homeserver.yaml must list %s during the migration", endpoint, he.Message, c.Identity.ServerName)
	case he.Status == 404 && he.ErrCode == "M_UNRECOGNIZED":
		st.r.add(Blocker, CodeFederationSelfRefused, endpoint, "no federation API answers %s at the federation URL (HTTP 404 M_UNRECOGNIZED): set synapse.federation_url to a listener with the federation resource", endpoint)
	default:
		hint := ""
		if !st.version.IsZero() && !st.version.AtLeast(versionSelfKeyLocal) {
			hint = fmt.Sprintf("; Synapse %s predates 1.47, which first verifies its own signatures locally: upgrade Synapse", st.r.SynapseVersion)
		} else if he.Status == 401 {
			hint = "; the configured signing key is probably not Synapse's current key"
		}
		st.r.add(Blocker, CodeFederationSelfRefused, endpoint, "Synapse refuses a federation request signed as %s with %s (%s): HTTP %d %s %s%s", c.Identity.ServerName, c.Identity.SigningKey().ID, endpoint, he.Status, he.ErrCode, he.Message, hint)
	}
	return nil
}

// IncompleteReport is the report of a run that could not start (bad configuration, Synapse
// unreachable): no findings, the error under check, exit status 2.
func IncompleteReport(serverName, synapseURL, check string, err error) *Report {
	r := &Report{ServerName: serverName, SynapseURL: synapseURL, Endpoints: []Endpoint{}, Disk: []Disk{},
		Findings: []Finding{}, Errors: []CheckError{{Check: check, Error: err.Error()}}}
	r.finish()
	return r
}
