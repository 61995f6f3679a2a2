package preflight_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/preflight"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

var (
	worldsMu sync.Mutex
	worlds   = map[string]*world.World{}
)

// testWorld generates (once per test binary) a small world: "clean" has no v1 room, "default" is
// the generator's default set of rooms, "oldkey" also has a rotated-out signing key.
func testWorld(t *testing.T, name string) *world.World {
	t.Helper()
	worldsMu.Lock()
	defer worldsMu.Unlock()
	if w := worlds[name]; w != nil {
		return w
	}
	opts := world.Options{Seed: 5, MessagesPerRoom: 6}
	switch name {
	case "clean":
		opts.NoV1Room = true
	case "oldkey":
		opts.OldKeyEvents = 3
	}
	w, err := world.Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	worlds[name] = w
	return w
}

// plentyOfSpace is a file system with a terabyte free, so no disk warning depends on the machine.
func plentyOfSpace(string) (preflight.FS, error) {
	return preflight.FS{FreeBytes: 1 << 40, Device: 1}, nil
}

// rig is a simulated Synapse with a checker pointed at it.
type rig struct {
	w       *world.World
	s       *synapsesim.Server
	checker *preflight.Checker
}

// newRig starts a simulated Synapse and builds a checker with the server's own identity and admin
// token; tweak changes the client configuration before the checker is built.
func newRig(t *testing.T, w *world.World, opts synapsesim.Options, tweak func(*synapseclient.Config)) *rig {
	t.Helper()
	opts.World = w
	s := synapsesim.Start(t, opts)
	cfg := synapseclient.Config{
		BaseURL: s.URL, AdminToken: s.AdminToken(), ServerName: w.ServerName, Identity: s.Identity(),
		MaxAttempts: 2, BaseBackoff: time.Millisecond, MaxTotalWait: time.Second, PageSize: 4,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := synapseclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{w: w, s: s, checker: &preflight.Checker{
		Admin: c.Admin(), Federation: c.Federation(), Identity: cfg.Identity, SynapseURL: s.URL,
		ExportDir: t.TempDir(), CachePath: t.TempDir() + "/cache", Statfs: plentyOfSpace,
	}}
}

func (r *rig) run(t *testing.T) *preflight.Report {
	t.Helper()
	rep, err := r.checker.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// findings returns the report's findings with a code.
func findings(rep *preflight.Report, code string) []preflight.Finding {
	var out []preflight.Finding
	for _, f := range rep.Findings {
		if f.Code == code {
			out = append(out, f)
		}
	}
	return out
}

func blockerCodes(rep *preflight.Report) []string {
	var out []string
	for _, f := range rep.Findings {
		if f.Severity == preflight.Blocker {
			out = append(out, f.Code+" "+f.Subject)
		}
	}
	return out
}

func TestCleanWorldHasNoBlockers(t *testing.T) {
	w := testWorld(t, "clean")
	r := newRig(t, w, synapsesim.Options{}, nil)
	rep := r.run(t)
	if rep.ExitStatus != 0 || rep.Blockers != 0 || len(rep.Errors) != 0 {
		t.Fatalf("exit %d, blockers %v, errors %v", rep.ExitStatus, blockerCodes(rep), rep.Errors)
	}
	if rep.SynapseVersion != "1.67.0" || rep.AdminUser != "@admin:"+w.ServerName || rep.ServerName != w.ServerName {
		t.Errorf("version %q, admin %q, server %q", rep.SynapseVersion, rep.AdminUser, rep.ServerName)
	}

	want := preflight.UserCounts{Total: len(w.Users)}
	for _, u := range w.Users {
		if u.Deactivated {
			want.Deactivated++
		} else {
			want.Active++
			if u.PasswordHash == "" {
				want.WithoutPassword++
			}
		}
		if u.Admin {
			want.Admins++
		}
	}
	if rep.Users == nil || *rep.Users != want || want.Deactivated == 0 || want.WithoutPassword == 0 {
		t.Errorf("users %+v, want %+v", rep.Users, want)
	}

	if rep.Rooms == nil || rep.Rooms.Total != len(w.Rooms) || rep.Rooms.Unsupported != 0 {
		t.Fatalf("rooms %+v, world has %d", rep.Rooms, len(w.Rooms))
	}
	var left []string
	var depths int64
	for _, room := range w.Rooms {
		if rep.Rooms.ByVersion[room.Version] == 0 {
			t.Errorf("version %s of %s not counted: %v", room.Version, room.ID, rep.Rooms.ByVersion)
		}
		if !room.LocalJoinedNow() {
			left = append(left, room.ID)
			continue
		}
		var d int64
		for _, id := range room.ForwardExtremities() {
			d = max(d, room.Event(id).Depth)
		}
		depths += d
	}
	if rep.Rooms.EventsEstimate != depths || depths == 0 {
		t.Errorf("events estimate %d, want %d", rep.Rooms.EventsEstimate, depths)
	}
	noLocal := findings(rep, preflight.CodeRoomNoLocalMember)
	if len(left) == 0 || len(noLocal) != len(left) {
		t.Fatalf("no-local-member warnings %v, rooms all left %v", noLocal, left)
	}
	for i, f := range noLocal {
		if f.Severity != preflight.Warning || f.Subject != left[i] || !strings.Contains(f.Message, left[i]) {
			t.Errorf("finding %+v, want a warning naming %s", f, left[i])
		}
	}

	var media preflight.MediaCounts
	for _, items := range r.s.LocalMedia() {
		media.Users++
		for _, m := range items {
			media.Files++
			media.Bytes += m.Length
		}
	}
	if rep.Media == nil || *rep.Media != media || media.Files == 0 {
		t.Errorf("media %+v, want %+v", rep.Media, media)
	}

	for _, code := range []string{preflight.CodeSigningKeyOK, preflight.CodeFederationSelfAccepted} {
		if fs := findings(rep, code); len(fs) != 1 || fs[0].Severity != preflight.Info {
			t.Errorf("%s: %+v", code, fs)
		}
	}
	if !strings.Contains(findings(rep, preflight.CodeFederationSelfAccepted)[0].Message, "rc_federation") {
		t.Error("the federation finding gives no rc_federation advice")
	}
	if len(rep.Endpoints) == 0 {
		t.Fatal("no endpoint table")
	}
	for _, e := range rep.Endpoints {
		if want := !strings.Contains(e.Path, "messages") && !strings.Contains(e.Path, "fetch_event"); e.Available != want {
			t.Errorf("Synapse 1.67: endpoint %s available=%v", e.Path, e.Available)
		}
	}
	if len(rep.Disk) != 2 || rep.Disk[0].EstimateBytes == 0 || rep.Disk[1].EstimateBytes == 0 || rep.Disk[0].SharedWith != "cache" {
		t.Errorf("disk %+v", rep.Disk)
	}
}

func TestNewSynapseOffersEveryEndpoint(t *testing.T) {
	r := newRig(t, testWorld(t, "clean"), synapsesim.Options{Version: "1.140.0"}, nil)
	rep := r.run(t)
	for _, e := range rep.Endpoints {
		if !e.Available {
			t.Errorf("Synapse 1.140: %s not available", e.Path)
		}
	}
	if fs := findings(rep, preflight.CodeAdminEndpointMissing); len(fs) != 0 {
		t.Errorf("missing endpoints reported: %+v", fs)
	}
}

func TestV1RoomIsABlockerUntilAccepted(t *testing.T) {
	w := testWorld(t, "default")
	v1 := w.RoomsOfKind(world.KindV1)
	if len(v1) != 1 {
		t.Fatalf("world has %d v1 rooms", len(v1))
	}
	r := newRig(t, w, synapsesim.Options{}, nil)
	rep := r.run(t)
	if rep.ExitStatus != 1 || rep.Blockers != 1 {
		t.Fatalf("exit %d, blockers %v", rep.ExitStatus, blockerCodes(rep))
	}
	f := findings(rep, preflight.CodeRoomVersionUnsupported)
	if len(f) != 1 || f[0].Severity != preflight.Blocker || f[0].Subject != v1[0].ID || !strings.Contains(f[0].Message, "-accept "+v1[0].ID) {
		t.Fatalf("finding %+v", f)
	}
	if rep.Findings[0].Code != preflight.CodeRoomVersionUnsupported {
		t.Errorf("blockers are not listed first: %+v", rep.Findings[0])
	}

	r.checker.Accept = []string{v1[0].ID}
	rep = r.run(t)
	f = findings(rep, preflight.CodeRoomVersionUnsupported)
	if rep.ExitStatus != 0 || len(f) != 1 || f[0].Severity != preflight.Warning || !f[0].Accepted || rep.Rooms.Accepted != 1 {
		t.Fatalf("accepted: exit %d, finding %+v", rep.ExitStatus, f)
	}

	r.checker.Accept = []string{v1[0].ID, "!typo:" + w.ServerName}
	rep = r.run(t)
	if u := findings(rep, preflight.CodeAcceptUnused); rep.ExitStatus != 0 || len(u) != 1 || u[0].Subject != "!typo:"+w.ServerName {
		t.Fatalf("unused -accept: exit %d, %+v", rep.ExitStatus, u)
	}
}

// otherIdentity is the world's server name with a key Synapse never had.
func otherIdentity(w *world.World) *signing.Identity {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(200 - i)
	}
	return &signing.Identity{ServerName: w.ServerName, Keys: []signing.Key{{ID: "ed25519:a_Othr", Seed: seed}}}
}

func TestConfiguredKeyIsNotThePublishedOne(t *testing.T) {
	w := testWorld(t, "clean")
	r := newRig(t, w, synapsesim.Options{}, func(c *synapseclient.Config) { c.Identity = otherIdentity(w) })
	rep := r.run(t)
	if rep.ExitStatus != 1 {
		t.Fatalf("exit %d, blockers %v", rep.ExitStatus, blockerCodes(rep))
	}
	km := findings(rep, preflight.CodeSigningKeyMismatch)
	if len(km) != 1 || km[0].Severity != preflight.Blocker || km[0].Subject != "ed25519:a_Othr" || !strings.Contains(km[0].Message, w.SigningKey.KeyID) {
		t.Fatalf("key finding %+v", km)
	}
	// Synapse also refuses requests signed with the wrong key: both blockers are named.
	fr := findings(rep, preflight.CodeFederationSelfRefused)
	if len(fr) != 1 || fr[0].Severity != preflight.Blocker || !strings.Contains(fr[0].Message, "401") {
		t.Fatalf("federation finding %+v", fr)
	}
	// The published current key is not in the configuration either.
	if pk := findings(rep, preflight.CodePublishedKeyNotInConfig); len(pk) != 1 || pk[0].Subject != w.SigningKey.KeyID {
		t.Errorf("published-key findings %+v", pk)
	}
}

func TestRetiredKeyAndMissingOldKeys(t *testing.T) {
	w := testWorld(t, "oldkey")
	if len(w.OldKeys) != 1 {
		t.Fatalf("world has %d old keys", len(w.OldKeys))
	}
	old := w.OldKeys[0]
	retired := &signing.Identity{ServerName: w.ServerName, Keys: []signing.Key{{ID: signing.KeyID(old.KeyID), Seed: old.Private.Seed()}}}
	r := newRig(t, w, synapsesim.Options{}, func(c *synapseclient.Config) { c.Identity = retired })
	rep := r.run(t)
	km := findings(rep, preflight.CodeSigningKeyMismatch)
	if rep.ExitStatus != 1 || len(km) != 1 || !strings.Contains(km[0].Message, "retired") {
		t.Fatalf("exit %d, key finding %+v", rep.ExitStatus, km)
	}

	// The right current key without the old one: no blocker, a warning naming the old key.
	current := &signing.Identity{ServerName: w.ServerName, Keys: []signing.Key{{ID: signing.KeyID(w.SigningKey.KeyID), Seed: w.SigningKey.Private.Seed()}}}
	r = newRig(t, w, synapsesim.Options{}, func(c *synapseclient.Config) { c.Identity = current })
	rep = r.run(t)
	pk := findings(rep, preflight.CodePublishedKeyNotInConfig)
	if rep.Blockers != 1 || len(pk) != 1 || pk[0].Subject != old.KeyID || pk[0].Severity != preflight.Warning {
		t.Fatalf("blockers %v, published-key findings %+v", blockerCodes(rep), pk)
	}
	// With the old key configured too, the warning goes away.
	r = newRig(t, w, synapsesim.Options{}, nil)
	if pk := findings(r.run(t), preflight.CodePublishedKeyNotInConfig); len(pk) != 0 {
		t.Errorf("old key configured, still %+v", pk)
	}
}

func TestSynapseRefusesFederationFromItself(t *testing.T) {
	w := testWorld(t, "clean")
	r := newRig(t, w, synapsesim.Options{FederationDomainWhitelist: []string{"friend.example"}}, nil)
	rep := r.run(t)
	fr := findings(rep, preflight.CodeFederationSelfRefused)
	if rep.ExitStatus != 1 || rep.Blockers != 1 || len(fr) != 1 || !strings.Contains(fr[0].Message, "federation_domain_whitelist") {
		t.Fatalf("exit %d, blockers %v, finding %+v", rep.ExitStatus, blockerCodes(rep), fr)
	}
	if len(findings(rep, preflight.CodeSigningKeyOK)) != 1 {
		t.Error("the key check should still pass")
	}
}

func TestFederationRateLimitIsAWarningWithAdvice(t *testing.T) {
	w := testWorld(t, "clean")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newRig(t, w, synapsesim.Options{Now: func() time.Time { return now }, RateLimit: &synapsesim.RateLimit{Requests: 1, Window: time.Hour}}, nil)
	// One request spends the origin's whole window.
	if _, err := r.checker.Federation.QueryProfile(t.Context(), "@alice:"+w.ServerName, ""); err != nil {
		t.Fatal(err)
	}
	rep := r.run(t)
	rl := findings(rep, preflight.CodeFederationRateLimited)
	if rep.ExitStatus != 0 || len(rl) != 1 || rl[0].Severity != preflight.Warning || !strings.Contains(rl[0].Message, "rc_federation") {
		t.Fatalf("exit %d, blockers %v, finding %+v", rep.ExitStatus, blockerCodes(rep), rl)
	}
}

func TestNonAdminTokenIsABlocker(t *testing.T) {
	w := testWorld(t, "clean")
	alice := w.User("@alice:" + w.ServerName)
	r := newRig(t, w, synapsesim.Options{}, func(c *synapseclient.Config) { c.AdminToken = alice.Devices[0].AccessToken })
	rep := r.run(t)
	na := findings(rep, preflight.CodeNoAdminAccess)
	if rep.ExitStatus != 1 || len(na) != 1 || !strings.Contains(na[0].Message, alice.ID) || !strings.Contains(na[0].Message, "not a server admin") {
		t.Fatalf("exit %d, finding %+v, errors %v", rep.ExitStatus, na, rep.Errors)
	}
	if rep.SynapseVersion != "1.67.0" || rep.Users != nil || rep.Rooms != nil || rep.Media != nil || len(rep.Errors) != 0 {
		t.Errorf("without admin access: version %q, users %v, rooms %v, media %v, errors %v", rep.SynapseVersion, rep.Users, rep.Rooms, rep.Media, rep.Errors)
	}
	// The federation and key checks still run, as the admin token's owner.
	if len(findings(rep, preflight.CodeSigningKeyOK)) != 1 || len(findings(rep, preflight.CodeFederationSelfAccepted)) != 1 {
		t.Errorf("findings %+v", rep.Findings)
	}

	r = newRig(t, w, synapsesim.Options{}, func(c *synapseclient.Config) { c.AdminToken = "syt_bogus" })
	rep = r.run(t)
	if na := findings(rep, preflight.CodeNoAdminAccess); rep.ExitStatus != 1 || len(na) != 1 || !strings.Contains(na[0].Message, "M_UNKNOWN_TOKEN") {
		t.Fatalf("unknown token: exit %d, %+v", rep.ExitStatus, na)
	}
}

func TestUnreachableSynapse(t *testing.T) {
	w := testWorld(t, "clean")
	dead := httptest.NewServer(nil)
	url := dead.URL
	dead.Close()
	c, err := synapseclient.New(synapseclient.Config{BaseURL: url, AdminToken: "t", ServerName: w.ServerName, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ck := &preflight.Checker{Admin: c.Admin(), Federation: c.Federation(), Identity: otherIdentity(w), SynapseURL: url}
	rep, err := ck.Run(t.Context())
	if !errors.Is(err, preflight.ErrUnreachable) || rep != nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("report %v, err %v", rep, err)
	}
}

func TestFailingCheckMakesTheReportIncomplete(t *testing.T) {
	w := testWorld(t, "clean")
	r := newRig(t, w, synapsesim.Options{}, nil)
	r.s.Faults().FailNext("admin.rooms", 10, 500)
	rep := r.run(t)
	if rep.ExitStatus != 2 || len(rep.Errors) != 1 || rep.Errors[0].Check != "rooms" || !strings.Contains(rep.Errors[0].Error, "/_synapse/admin/v1/rooms") {
		t.Fatalf("exit %d, errors %+v", rep.ExitStatus, rep.Errors)
	}
	if rep.Users == nil || len(findings(rep, preflight.CodeSigningKeyOK)) != 1 {
		t.Error("the other checks did not run")
	}
}

func TestCancelledRunReturnsTheContextError(t *testing.T) {
	r := newRig(t, testWorld(t, "clean"), synapsesim.Options{}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if rep, err := r.checker.Run(ctx); !errors.Is(err, context.Canceled) || rep != nil {
		t.Fatalf("report %v, err %v", rep, err)
	}
}
