package preflight

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// fakeAdmin is a hand-written Admin whose answers the test sets.
type fakeAdmin struct {
	version    string
	versionErr error
	users      []synapseclient.UserSummary
	search     []synapseclient.SearchUser
	rooms      []synapseclient.RoomSummary
	roomsErr   error
	depth      map[string]int64
	media      *synapseclient.MediaTotals
	mediaErr   error
}

func (f *fakeAdmin) ServerVersion(context.Context) (*synapseclient.ServerVersionInfo, error) {
	if f.versionErr != nil {
		return nil, f.versionErr
	}
	return &synapseclient.ServerVersionInfo{ServerVersion: f.version}, nil
}

func (f *fakeAdmin) AdminUserID(context.Context) (string, error) { return "@admin:example.org", nil }

func (f *fakeAdmin) AllUsers(context.Context) ([]synapseclient.UserSummary, error) {
	return f.users, nil
}

func (f *fakeAdmin) SearchUsers(context.Context, string) ([]synapseclient.SearchUser, error) {
	return f.search, nil
}

func (f *fakeAdmin) AllRooms(context.Context) ([]synapseclient.RoomSummary, error) {
	return f.rooms, f.roomsErr
}

func (f *fakeAdmin) ForwardExtremities(_ context.Context, id string) ([]synapseclient.ForwardExtremity, error) {
	d, ok := f.depth[id]
	if !ok {
		return nil, fmt.Errorf("no extremities for %s", id)
	}
	return []synapseclient.ForwardExtremity{{EventID: "$a", Depth: d - 1}, {EventID: "$b", Depth: d}}, nil
}

func (f *fakeAdmin) LocalMediaTotals(context.Context) (*synapseclient.MediaTotals, error) {
	if f.mediaErr != nil {
		return nil, f.mediaErr
	}
	if f.media == nil {
		return &synapseclient.MediaTotals{}, nil
	}
	return f.media, nil
}

// fakeFederation publishes id's key document and answers the profile probe with probeErr.
type fakeFederation struct {
	id       *signing.Identity
	probeErr error
}

func (f *fakeFederation) Version(context.Context) (*synapseclient.FederationVersion, error) {
	v := &synapseclient.FederationVersion{}
	v.Server.Name, v.Server.Version = "Synapse", "1.99.0"
	return v, nil
}

func (f *fakeFederation) ServerKeys(context.Context) (*synapseclient.ServerKeys, error) {
	raw, err := f.id.KeyDocument(time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	var out synapseclient.ServerKeys
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	out.Raw = raw
	return &out, nil
}

func (f *fakeFederation) QueryProfile(context.Context, string, string) (*synapseclient.Profile, error) {
	return &synapseclient.Profile{}, f.probeErr
}

func testIdentity() *signing.Identity {
	seed := bytes.Repeat([]byte{7}, 32)
	return &signing.Identity{ServerName: "example.org", Keys: []signing.Key{{ID: "ed25519:a_Test", Seed: seed}}}
}

func room(id, version string, localMembers, stateEvents int) synapseclient.RoomSummary {
	return synapseclient.RoomSummary{RoomID: id, Version: version, JoinedLocalMembers: localMembers, StateEvents: stateEvents}
}

func newFakeChecker(a *fakeAdmin) *Checker {
	id := testIdentity()
	return &Checker{Admin: a, Federation: &fakeFederation{id: id}, Identity: id, SynapseURL: "http://synapse"}
}

func codesOf(r *Report, sev Severity) map[string][]string {
	out := map[string][]string{}
	for _, f := range r.Findings {
		if f.Severity == sev {
			out[f.Code] = append(out[f.Code], f.Subject)
		}
	}
	return out
}

func TestRoomVersionsSortedIntoBlockersAndWarnings(t *testing.T) {
	a := &fakeAdmin{version: "1.99.0", rooms: []synapseclient.RoomSummary{
		room("!v1:example.org", "1", 1, 5), room("!v2:example.org", "2", 1, 5), room("!none:example.org", "", 1, 5),
		room("!v3:example.org", "3", 1, 5), room("!v4:example.org", "4", 1, 5), room("!v5:example.org", "5", 1, 5),
		room("!v6:example.org", "6", 1, 5), room("!v12:example.org", "12", 1, 5),
		room("!msc:example.org", "org.example.msc9999", 1, 5), room("!v13:example.org", "13", 0, 5),
	}, depth: map[string]int64{}}
	for _, r := range a.rooms {
		if r.JoinedLocalMembers > 0 {
			a.depth[r.RoomID] = 10
		}
	}
	r, err := newFakeChecker(a).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	blockers, warnings := codesOf(r, Blocker), codesOf(r, Warning)
	if got := strings.Join(blockers[CodeRoomVersionUnsupported], " "); got != "!v1:example.org !v2:example.org !none:example.org" || len(blockers) != 1 {
		t.Errorf("blockers %v", blockers)
	}
	if got := strings.Join(warnings[CodeRoomVersionUnstable], " "); got != "!v3:example.org !v4:example.org !v5:example.org" {
		t.Errorf("unstable %v", got)
	}
	if got := strings.Join(warnings[CodeRoomVersionUnknown], " "); got != "!msc:example.org !v13:example.org" {
		t.Errorf("unknown %v", got)
	}
	if got := warnings[CodeRoomNoLocalMember]; len(got) != 1 || got[0] != "!v13:example.org" {
		t.Errorf("no local member %v", got)
	}
	n := r.Rooms
	if n.Total != 10 || n.Unsupported != 3 || n.Unstable != 3 || n.NoLocalMember != 1 || n.StateEvents != 50 || n.ByVersion["1"] != 2 {
		t.Errorf("counts %+v", n)
	}
	// The room with no local member is left out of the estimate (the fake would refuse it).
	if r.ExitStatus != 1 || len(r.Errors) != 0 || n.EventsEstimate != 90 {
		t.Errorf("exit %d, errors %v, estimate %d", r.ExitStatus, r.Errors, n.EventsEstimate)
	}
}

func TestUserCountsAndPasswords(t *testing.T) {
	a := &fakeAdmin{version: "1.99.0",
		users: []synapseclient.UserSummary{
			{Name: "@admin:example.org", Admin: true}, {Name: "@sso:example.org"}, {Name: "@gone:example.org", Deactivated: true},
			{Name: "@guest:example.org", IsGuest: true},
		},
		search: []synapseclient.SearchUser{
			{Name: "@admin:example.org", PasswordHash: "$2b$04$x"}, {Name: "@sso:example.org"}, {Name: "@gone:example.org"},
			{Name: "@guest:example.org", PasswordHash: "$2b$04$y"},
		},
	}
	r, err := newFakeChecker(a).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := UserCounts{Total: 4, Active: 3, Deactivated: 1, Admins: 1, Guests: 1, WithoutPassword: 1}
	if *r.Users != want {
		t.Errorf("users %+v, want %+v", *r.Users, want)
	}
	var msg string
	for _, f := range r.Findings {
		if f.Code == CodeUsersWithoutPassword {
			msg = f.Message
		}
	}
	if !strings.Contains(msg, "1 active user without") || !strings.Contains(msg, "@sso:example.org") || strings.Contains(msg, "@gone") {
		t.Errorf("message %q", msg)
	}
	if r.ExitStatus != 0 {
		t.Errorf("exit %d: %+v %v", r.ExitStatus, r.Findings, r.Errors)
	}
}

func TestOldSynapseLacksEndpoints(t *testing.T) {
	c := newFakeChecker(&fakeAdmin{version: "1.45.0"})
	c.Federation = &fakeFederation{id: c.Identity, probeErr: &synapseclient.Error{Status: 401, ErrCode: "M_UNAUTHORIZED", Message: "Failed to find any key"}}
	r, err := c.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	missing := codesOf(r, Blocker)[CodeAdminEndpointMissing]
	if len(missing) != 1 || missing[0] != "GET /_synapse/admin/v1/users/{userId}/accountdata" {
		t.Errorf("missing required endpoints %v", missing)
	}
	var refused string
	for _, f := range r.Findings {
		if f.Code == CodeFederationSelfRefused {
			refused = f.Message
		}
	}
	if !strings.Contains(refused, "predates 1.47") {
		t.Errorf("federation message %q", refused)
	}
}

func TestVersionFromFederationWhenNotAdmin(t *testing.T) {
	a := &fakeAdmin{versionErr: &synapseclient.Error{Status: 403, ErrCode: "M_FORBIDDEN", Message: "You are not a server admin"}}
	r, err := newFakeChecker(a).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r.SynapseVersion != "1.99.0" || r.AdminUser != "@admin:example.org" || r.ExitStatus != 1 {
		t.Errorf("version %q, admin %q, exit %d", r.SynapseVersion, r.AdminUser, r.ExitStatus)
	}
	// 404 from a worker or a proxy that hides the admin API.
	a.versionErr = &synapseclient.Error{Status: 404, ErrCode: "M_UNRECOGNIZED", Message: "Unrecognized request"}
	r, _ = newFakeChecker(a).Run(t.Context())
	if b := codesOf(r, Blocker)[CodeNoAdminAccess]; len(b) != 1 || b[0] != "GET /_synapse/admin/v1/server_version" {
		t.Errorf("blockers %v", codesOf(r, Blocker))
	}
}

func TestMediaStatisticsMissingIsNoError(t *testing.T) {
	a := &fakeAdmin{version: "1.99.0", mediaErr: &synapseclient.Error{Status: 404, ErrCode: "M_UNRECOGNIZED"}}
	r, _ := newFakeChecker(a).Run(t.Context())
	if r.ExitStatus != 0 || r.Media != nil || len(codesOf(r, Info)[CodeMedia]) != 1 {
		t.Errorf("exit %d, media %+v, errors %v", r.ExitStatus, r.Media, r.Errors)
	}
	a.mediaErr = &synapseclient.Error{Status: 500, ErrCode: "M_UNKNOWN"}
	r, _ = newFakeChecker(a).Run(t.Context())
	if r.ExitStatus != 2 || len(r.Errors) != 1 || r.Errors[0].Check != "media" {
		t.Errorf("exit %d, errors %v", r.ExitStatus, r.Errors)
	}
}

func TestServerNameMismatchIsABlocker(t *testing.T) {
	c := newFakeChecker(&fakeAdmin{version: "1.99.0"})
	other := testIdentity()
	other.ServerName = "elsewhere.org"
	c.Federation = &fakeFederation{id: other}
	r, _ := c.Run(t.Context())
	if b := codesOf(r, Blocker)[CodeServerNameMismatch]; len(b) != 1 || b[0] != "elsewhere.org" || r.ExitStatus != 1 {
		t.Errorf("blockers %v", codesOf(r, Blocker))
	}
}

func TestDiskWarnsUnderTwiceTheEstimate(t *testing.T) {
	a := &fakeAdmin{version: "1.99.0",
		users: []synapseclient.UserSummary{{Name: "@a:example.org"}, {Name: "@b:example.org"}},
		rooms: []synapseclient.RoomSummary{room("!r:example.org", "10", 2, 10), room("!s:example.org", "11", 1, 6)},
		depth: map[string]int64{"!r:example.org": 1000, "!s:example.org": 24},
	}
	exportNeed := uint64(2*exportBytesPerUser + 16*exportBytesPerStateItem + 2*exportBytesPerRoom)
	cacheNeed := uint64(1024 * cacheBytesPerEvent)
	dir := t.TempDir()
	cases := []struct {
		name        string
		free        map[string]FS
		lowWarnings []string
		shared      string
	}{
		{"separate and roomy", map[string]FS{"export": {FreeBytes: 2 * exportNeed, Device: 1}, "cache": {FreeBytes: 2 * cacheNeed, Device: 2}}, nil, ""},
		{"separate, cache tight", map[string]FS{"export": {FreeBytes: 2 * exportNeed, Device: 1}, "cache": {FreeBytes: 2*cacheNeed - 1, Device: 2}}, []string{"cache"}, ""},
		{"shared, enough for each alone", map[string]FS{"export": {FreeBytes: 2 * cacheNeed, Device: 3}, "cache": {FreeBytes: 2 * cacheNeed, Device: 3}}, []string{"export", "cache"}, "cache"},
		{"shared and roomy", map[string]FS{"export": {FreeBytes: 2 * (exportNeed + cacheNeed), Device: 3}, "cache": {FreeBytes: 2 * (exportNeed + cacheNeed), Device: 3}}, nil, "cache"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeChecker(a)
			c.ExportDir = filepath.Join(dir, "export", "not", "yet")
			c.CachePath = filepath.Join(dir, "cache.db")
			calls := 0
			c.Statfs = func(path string) (FS, error) {
				calls++
				if path != dir {
					return FS{}, fmt.Errorf("statfs of %s, want the existing parent %s", path, dir)
				}
				if calls == 1 {
					return tc.free["export"], nil
				}
				return tc.free["cache"], nil
			}
			r, err := c.Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if r.Rooms.EventsEstimate != 1024 || len(r.Disk) != 2 {
				t.Fatalf("estimate %d, disk %+v, findings %+v", r.Rooms.EventsEstimate, r.Disk, r.Findings)
			}
			if r.Disk[0].EstimateBytes != exportNeed || r.Disk[1].EstimateBytes != cacheNeed || r.Disk[0].SharedWith != tc.shared {
				t.Errorf("disk %+v", r.Disk)
			}
			var low []string
			for _, f := range r.Findings {
				if f.Code == CodeDiskSpaceLow {
					low = append(low, strings.TrimSuffix(strings.Fields(strings.SplitAfter(f.Message, " for the ")[1])[0], ","))
				}
			}
			if strings.Join(low, ",") != strings.Join(tc.lowWarnings, ",") || r.ExitStatus != 0 {
				t.Errorf("low-space warnings for %v, want %v (exit %d)", low, tc.lowWarnings, r.ExitStatus)
			}
		})
	}
}

func TestDiskOfARealFolder(t *testing.T) {
	dir := t.TempDir()
	fs, err := osStatfs(dir)
	if err != nil {
		t.Skipf("no statfs here: %v", err)
	}
	if fs.FreeBytes == 0 {
		t.Errorf("statfs of %s: %+v", dir, fs)
	}
	if got, err := existingAncestor(filepath.Join(dir, "a", "b")); err != nil || got != dir {
		t.Errorf("existing ancestor %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := existingAncestor(filepath.Join(dir, "file", "below")); err == nil {
		t.Error("a path below a file was accepted")
	}
}

func TestRenderings(t *testing.T) {
	a := &fakeAdmin{version: "1.99.0", rooms: []synapseclient.RoomSummary{room("!old:example.org", "1", 1, 3)}, depth: map[string]int64{"!old:example.org": 10}}
	r, err := newFakeChecker(a).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var plain, color, narrow, js bytes.Buffer
	if err := r.WriteText(&plain, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteText(&color, TextOptions{Color: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteText(&narrow, TextOptions{Width: 70}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.String(), "\x1b[") || !strings.Contains(color.String(), ansiRed+"BLOCKER ") {
		t.Errorf("colours: plain %q, color %q", plain.String(), color.String())
	}
	// Below the findings header, a line is longer than the width only when it holds one long word.
	_, table, _ := strings.Cut(narrow.String(), "SEVERITY")
	table, _, _ = strings.Cut(table, "\n\n")
	continued := 0
	for _, l := range strings.Split(table, "\n")[1:] {
		if strings.HasPrefix(l, " ") {
			continued++
			if len(l) > 70 && strings.Contains(strings.TrimSpace(l), " ") {
				t.Errorf("continuation line of %d columns: %q", len(l), l)
			}
		}
	}
	if continued == 0 {
		t.Errorf("no continuation lines:\n%s", narrow.String())
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.ExitStatus != 1 || back.Findings[0].Code != CodeRoomVersionUnsupported || back.Rooms.ByVersion["1"] != 1 {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(js.Bytes(), &keys)
	for _, k := range []string{"server_name", "synapse_url", "synapse_version", "admin_user", "endpoints", "users", "rooms", "media", "disk", "findings", "errors", "blockers", "warnings", "exit_status"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}

	inc := IncompleteReport("example.org", "http://x", "reach", errors.New("connection refused"))
	js.Reset()
	if err := inc.WriteJSON(&js); err != nil || !strings.Contains(js.String(), `"exit_status": 2`) || !strings.Contains(js.String(), `"findings": []`) {
		t.Errorf("incomplete report: %v %s", err, js.String())
	}
}

func TestHelpers(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	vs := []string{"10", "2", "org.msc", "1", "11", "6"}
	sortVersions(vs)
	if strings.Join(vs, " ") != "1 2 6 10 11 org.msc" {
		t.Errorf("sorted %v", vs)
	}
	if got := wrap("aaa bbb ccc ddd eee fff ggg hhh iii jjj", 20); len(got) != 2 || got[0] != "aaa bbb ccc ddd eee" {
		t.Errorf("wrap %q", got)
	}
	if got := listSome([]string{"a", "b", "c"}, 2); got != "a, b and 1 more" {
		t.Errorf("listSome %q", got)
	}
}

func TestSelfFederationAnswersSorted(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code string
		sev  Severity
		exit int
	}{
		{"profile found", nil, CodeFederationSelfAccepted, Info, 0},
		{"profile not found", &synapseclient.Error{Status: 404, ErrCode: "M_NOT_FOUND", Message: "Profile was not found"}, CodeFederationSelfAccepted, Info, 0},
		{"profile lookup disabled", &synapseclient.Error{Status: 403, ErrCode: "M_FORBIDDEN", Message: "Profile lookup over federation is disabled on this homeserver"}, CodeFederationSelfAccepted, Info, 0},
		{"whitelist", &synapseclient.Error{Status: 403, ErrCode: "M_FORBIDDEN", Message: "Federation denied with example.org."}, CodeFederationSelfRefused, Blocker, 1},
		{"bad signature", &synapseclient.Error{Status: 401, ErrCode: "M_UNAUTHORIZED", Message: "Invalid signature"}, CodeFederationSelfRefused, Blocker, 1},
		{"no federation listener", &synapseclient.Error{Status: 404, ErrCode: "M_UNRECOGNIZED", Message: "Unrecognized request"}, CodeFederationSelfRefused, Blocker, 1},
		{"rate limited", &synapseclient.RetryError{Endpoint: "x", Attempts: 2, Last: &synapseclient.Error{Status: 429, ErrCode: "M_LIMIT_EXCEEDED"}}, CodeFederationRateLimited, Warning, 0},
		{"server error", &synapseclient.Error{Status: 502}, "", "", 2},
		{"no answer", errors.New("connection refused"), "", "", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeChecker(&fakeAdmin{version: "1.99.0"})
			c.Federation = &fakeFederation{id: c.Identity, probeErr: tc.err}
			r, err := c.Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if r.ExitStatus != tc.exit {
				t.Errorf("exit %d, want %d: %+v %v", r.ExitStatus, tc.exit, r.Findings, r.Errors)
			}
			if tc.code == "" {
				if len(r.Errors) != 1 || r.Errors[0].Check != "federation" {
					t.Errorf("errors %v", r.Errors)
				}
				return
			}
			if got := codesOf(r, tc.sev)[tc.code]; len(got) != 1 {
				t.Errorf("findings %+v, want one %s %s", r.Findings, tc.sev, tc.code)
			}
		})
	}
}

func TestCheckerWithoutIdentityIsRefused(t *testing.T) {
	if _, err := (&Checker{Admin: &fakeAdmin{}, Federation: &fakeFederation{}}).Run(t.Context()); err == nil {
		t.Fatal("a checker without an identity ran")
	}
}
