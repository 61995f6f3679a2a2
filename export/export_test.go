package export

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/internal/jsontest"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// TestExportMatchesWorld exports a generated world and compares every file, field by field, with
// the world it was built from; every PDU must verify with the world's keys.
func TestExportMatchesWorld(t *testing.T) { testExportMatchesWorld(t, smallWorld) }

// TestExportMatchesWorldWithVersion12Rooms is TestExportMatchesWorld on rooms of version 12 too.
func TestExportMatchesWorldWithVersion12Rooms(t *testing.T) { testExportMatchesWorld(t, v12World) }

func testExportMatchesWorld(t *testing.T, opts world.Options) {
	w := testWorld(t, opts)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	dir := filepath.Join(t.TempDir(), "out")
	s := runExport(t, exportConfig(sim, dir))

	if s.Users != len(w.Users) || s.Rooms != len(w.Rooms) || s.UsersDone != len(w.Users) || s.RoomsDone != len(w.Rooms) {
		t.Fatalf("summary %+v, world has %d users and %d rooms", s.Progress, len(w.Users), len(w.Rooms))
	}
	if n := sim.LiveLoginTokens(); n != 0 {
		t.Errorf("%d login-as tokens still valid after the export", n)
	}
	if s.LoginTokens != int64(len(w.Users)-1) {
		t.Errorf("%d login-as tokens made, want one per user but the admin (%d)", s.LoginTokens, len(w.Users)-1)
	}
	files := readDir(t, dir)
	man := checkManifest(t, w, files)
	if !man.Complete || man.FinishedAt == nil {
		t.Error("manifest not marked complete")
	}
	for _, u := range w.Users {
		p := "users/" + exportfmt.Encode(u.ID) + ".json"
		data, ok := files[p]
		if !ok {
			t.Errorf("no file for user %s", u.ID)
			continue
		}
		t.Run("user "+u.Localpart, func(t *testing.T) { checkUser(t, w, u, data) })
	}
	for _, r := range w.Rooms {
		p := "rooms/" + exportfmt.Encode(r.ID) + ".json"
		data, ok := files[p]
		if !ok {
			t.Errorf("no file for room %s", r.ID)
			continue
		}
		t.Run("room "+r.Kind+" "+r.ID, func(t *testing.T) { checkRoom(t, w, r, data) })
	}
	if len(files) != len(w.Users)+len(w.Rooms)+1 {
		t.Errorf("%d files in the export, want %d", len(files), len(w.Users)+len(w.Rooms)+1)
	}
	checkModes(t, dir)
}

// checkModes asserts the directories are 0700 and the files 0600.
func checkModes(t *testing.T, dir string) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if info.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", p, info.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func checkManifest(t *testing.T, w *world.World, files map[string][]byte) *exportfmt.Manifest {
	t.Helper()
	var m exportfmt.Manifest
	if err := json.Unmarshal(files[exportfmt.ManifestName], &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if m.Format != exportfmt.Format || m.FormatVersion != exportfmt.FormatVersion || m.ServerName != w.ServerName || m.SynapseVersion != "1.67.0" {
		t.Errorf("manifest header %q %d %q %q", m.Format, m.FormatVersion, m.ServerName, m.SynapseVersion)
	}
	if k, ok := m.PublicKeys[w.SigningKey.KeyID]; !ok || k.Key != w.SigningKey.PublicBase64() || m.SigningKeyID != w.SigningKey.KeyID {
		t.Errorf("manifest public keys %v, signing key %s; want %s", m.PublicKeys, m.SigningKeyID, w.SigningKey.KeyID)
	}
	for _, ok := range w.OldKeys {
		if k := m.PublicKeys[ok.KeyID]; k.Key != ok.PublicBase64() || k.ExpiredTS == nil || *k.ExpiredTS != ok.ExpiredTS {
			t.Errorf("old key %s missing or wrong in the manifest: %+v", ok.KeyID, k)
		}
	}
	deact, admins, nopw, noLocal := 0, 0, 0, 0
	for _, u := range w.Users {
		if u.Deactivated {
			deact++
		}
		if u.Admin {
			admins++
		}
		if u.PasswordHash == "" {
			nopw++
		}
	}
	for _, r := range w.Rooms {
		if !r.LocalJoinedNow() {
			noLocal++
		}
	}
	want := exportfmt.Counts{Users: len(w.Users), UsersDeactivated: deact, UsersAdmin: admins, UsersWithoutPassword: nopw, Rooms: len(w.Rooms),
		RoomsWithoutLocalMembers: noLocal, UserFiles: len(w.Users), RoomFiles: len(w.Rooms)}
	if m.Counts != want {
		t.Errorf("counts %+v, want %+v", m.Counts, want)
	}
	if len(m.Files) != len(w.Users)+len(w.Rooms) || len(m.Skipped) != 0 || len(m.Failed) != 0 {
		t.Errorf("manifest lists %d files, %d skipped, %d failed", len(m.Files), len(m.Skipped), len(m.Failed))
	}
	for p, ent := range m.Files {
		data, ok := files[p]
		if !ok || exportfmt.SHA256Hex(data) != ent.SHA256 || int64(len(data)) != ent.Size {
			t.Errorf("%s: missing or not matching its manifest entry", p)
		}
		stem := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(p, "users/"), "rooms/"), ".json")
		if !exportfmt.IsStemOf(stem, ent.ID) {
			t.Errorf("%s is not the file name of %s", p, ent.ID)
		}
		if id := gjson.GetBytes(data, map[string]string{"user": "uid", "room": "room_id"}[ent.Kind]).String(); id != ent.ID {
			t.Errorf("%s holds %q, manifest says %q", p, id, ent.ID)
		}
	}
	return &m
}

func eqJSON(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if jsontest.Canonical(t, got) != jsontest.Canonical(t, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, jsontest.Canonical(t, got), jsontest.Canonical(t, want))
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func checkUser(t *testing.T, w *world.World, u *world.User, data []byte) {
	var f exportfmt.UserFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	type flags struct {
		UID                string
		Admin, Deactivated bool
		UserType, Hash     any
		Creation           int64
	}
	got := flags{f.UID, f.Admin, f.Deactivated, nil, nil, f.CreationTS}
	if f.UserType != nil {
		got.UserType = *f.UserType
	}
	if f.PasswordHash != nil {
		got.Hash = *f.PasswordHash
	}
	want := flags{u.ID, u.Admin, u.Deactivated, nullable(u.UserType), nullable(u.PasswordHash), u.CreationTS}
	if got != want {
		t.Errorf("account:\n got %+v\nwant %+v", got, want)
	}
	prof := map[string]any{}
	if u.Profile.DisplayName != "" {
		prof["displayname"] = u.Profile.DisplayName
	}
	if u.Profile.AvatarURL != "" {
		prof["avatar_url"] = u.Profile.AvatarURL
	}
	eqJSON(t, "profile", f.Profile, jsontest.Marshal(t, prof))
	eqJSON(t, "threepids", jsontest.Marshal(t, f.Threepids), jsontest.Marshal(t, append([]world.Threepid{}, u.Threepids...)))
	eqJSON(t, "external_ids", jsontest.Marshal(t, f.ExternalIDs), jsontest.Marshal(t, append([]world.ExternalID{}, u.ExternalIDs...)))

	// Account data: every global type plus m.push_rules; every room type plus m.tag.
	wantGlobal := map[string]json.RawMessage{"m.push_rules": u.PushRules}
	for k, v := range u.AccountData.Global {
		wantGlobal[k] = v
	}
	eqJSON(t, "global account data", jsontest.Marshal(t, f.AccountData.Global), jsontest.Marshal(t, wantGlobal))
	wantRooms := map[string]map[string]json.RawMessage{}
	for r, m := range u.AccountData.Rooms {
		wantRooms[r] = map[string]json.RawMessage{}
		for k, v := range m {
			wantRooms[r][k] = v
		}
	}
	for r, tags := range u.Tags {
		if wantRooms[r] == nil {
			wantRooms[r] = map[string]json.RawMessage{}
		}
		wantRooms[r]["m.tag"] = jsontest.Marshal(t, map[string]any{"tags": tags})
	}
	eqJSON(t, "room account data and tags", jsontest.Marshal(t, f.AccountData.Rooms), jsontest.Marshal(t, wantRooms))

	var wantDevices []map[string]any
	wantKeys := map[string]json.RawMessage{}
	for _, d := range u.Devices {
		wantDevices = append(wantDevices, map[string]any{"device_id": d.ID, "display_name": nullable(d.DisplayName), "last_seen_ip": d.LastSeenIP,
			"last_seen_ts": d.LastSeenTS, "last_seen_user_agent": d.LastSeenUserAgent, "user_id": u.ID})
		if d.Keys != nil {
			wantKeys[d.ID] = d.Keys
		}
	}
	var gotDevices []map[string]any
	for _, d := range f.Devices {
		var m map[string]any
		_ = json.Unmarshal(d, &m)
		gotDevices = append(gotDevices, m)
	}
	byID := func(ds []map[string]any) string {
		out := map[string]map[string]any{}
		for _, d := range ds {
			out[fmt.Sprint(d["device_id"])] = d
		}
		return jsontest.Canonical(t, jsontest.Marshal(t, out))
	}
	if byID(gotDevices) != byID(wantDevices) {
		t.Errorf("devices:\n got %s\nwant %s", byID(gotDevices), byID(wantDevices))
	}
	var gotPushers []world.Pusher
	for _, p := range f.Pushers {
		var wp world.Pusher
		if err := json.Unmarshal(p, &wp); err != nil {
			t.Fatal(err)
		}
		gotPushers = append(gotPushers, wp)
	}
	eqJSON(t, "pushers", jsontest.Marshal(t, gotPushers), jsontest.Marshal(t, u.Pushers))
	eqJSON(t, "joined rooms", jsontest.Marshal(t, f.JoinedRooms), jsontest.Marshal(t, jsontest.Sorted(append([]string{}, w.JoinedRooms(u.ID)...))))

	eqJSON(t, "device keys", jsontest.Marshal(t, f.E2E.DeviceKeys), jsontest.Marshal(t, wantKeys))
	for dev, k := range f.E2E.DeviceKeys {
		d := deviceOf(u, dev)
		if err := signing.VerifyJSON(u.ID, signing.KeyID("ed25519:"+dev), d.Ed25519.Public().(ed25519.PublicKey), k); err != nil {
			t.Errorf("device keys of %s do not verify: %v", dev, err)
		}
	}
	if cs := u.CrossSigning; cs != nil {
		eqJSON(t, "master key", f.E2E.MasterKey, cs.Master)
		eqJSON(t, "self-signing key", f.E2E.SelfSigningKey, cs.SelfSigning)
		eqJSON(t, "user-signing key", f.E2E.UserSigningKey, cs.UserSigning)
	} else if string(f.E2E.MasterKey)+string(f.E2E.SelfSigningKey)+string(f.E2E.UserSigningKey) != "nullnullnull" {
		t.Error("cross-signing keys for a user without them")
	}
	kb := u.KeyBackup
	switch {
	case kb == nil && f.E2E.KeyBackup != nil:
		t.Error("key backup for a user without one")
	case kb != nil && f.E2E.KeyBackup == nil:
		t.Error("key backup missing")
	case kb != nil:
		g := f.E2E.KeyBackup
		if g.Version != kb.Version || g.Algorithm != kb.Algorithm || g.ETag != kb.ETag || g.Count != int64(kb.Count()) {
			t.Errorf("key backup %s %s %s %d, want %s %s %s %d", g.Version, g.Algorithm, g.ETag, g.Count, kb.Version, kb.Algorithm, kb.ETag, kb.Count())
		}
		eqJSON(t, "backup auth_data", g.AuthData, kb.AuthData)
		eqJSON(t, "backed-up sessions", jsontest.Marshal(t, g.Rooms), jsontest.Marshal(t, kb.Rooms))
	}
	wantAs := "login_as"
	if u.Admin {
		wantAs = "admin_token"
	}
	if f.ClientAPIAs != wantAs {
		t.Errorf("client_api_as %q, want %q", f.ClientAPIAs, wantAs)
	}
	for _, secret := range []string{"syt_", "access_token"} {
		if strings.Contains(string(data), secret) {
			t.Errorf("user file contains %q", secret)
		}
	}
}

func deviceOf(u *world.User, id string) *world.Device {
	for _, d := range u.Devices {
		if d.ID == id {
			return d
		}
	}
	return &world.Device{}
}

// verifyPDU checks every signature of a PDU with the world's keys, and its event ID and hash.
func verifyPDU(t *testing.T, w *world.World, r *world.Room, pdu []byte) string {
	t.Helper()
	id, err := checkPDU(r.Version, r.ID, pdu)
	if err != nil {
		t.Fatalf("PDU: %v", err)
	}
	sigs := gjson.GetBytes(pdu, "signatures").Map()
	if len(sigs) == 0 {
		t.Errorf("%s has no signatures", id)
	}
	for server := range sigs {
		kids, err := signing.SignatureKeyIDs(server, pdu)
		if err != nil {
			t.Fatal(err)
		}
		for _, kid := range kids {
			pub, _, ok := w.KeyFor(server, string(kid))
			if !ok {
				t.Errorf("%s: unknown key %s of %s", id, kid, server)
				continue
			}
			if err := signing.VerifyEventSignature(r.Version, server, kid, pub, pdu); err != nil {
				t.Errorf("%s: signature of %s (%s) does not verify: %v", id, server, kid, err)
			}
		}
	}
	if gjson.GetBytes(pdu, "unsigned").Exists() {
		t.Errorf("%s still has unsigned", id)
	}
	return id
}

func checkRoom(t *testing.T, w *world.World, r *world.Room, data []byte) {
	var f exportfmt.RoomFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if f.RoomID != r.ID || f.RoomVersion != r.Version {
		t.Errorf("room %s v%s, want %s v%s", f.RoomID, f.RoomVersion, r.ID, r.Version)
	}
	eqJSON(t, "forward extremities", jsontest.Marshal(t, f.ForwardExtremities), jsontest.Marshal(t, r.ForwardExtremities()))
	var aliases []string
	for a, id := range w.Aliases {
		if id == r.ID {
			aliases = append(aliases, a)
		}
	}
	eqJSON(t, "aliases", jsontest.Marshal(t, f.Aliases), jsontest.Marshal(t, jsontest.Sorted(aliases)))
	if f.Published != r.IsPublic {
		t.Errorf("published %v, want %v", f.Published, r.IsPublic)
	}
	local, remote := map[string]string{}, map[string]string{}
	servers := map[string]bool{}
	if !r.LocalJoinedNow() {
		if f.StateFormat != exportfmt.StateClient || len(f.AuthChain) != 0 || f.JoinedLocalMembers != 0 {
			t.Fatalf("room without local members: state_format %q, %d auth events", f.StateFormat, len(f.AuthChain))
		}
		for _, m := range r.JoinedMembers() {
			if serverOfID(m) == w.ServerName {
				local[m] = "join"
			} else {
				remote[m] = "join"
				servers[serverOfID(m)] = true
			}
		}
	} else {
		if f.StateFormat != exportfmt.StateFederation {
			t.Fatalf("state_format %q", f.StateFormat)
		}
		cur := r.CurrentState()
		if len(f.State) != cur.Len() {
			t.Errorf("%d state events, want %d", len(f.State), cur.Len())
		}
		var stateIDs []string
		for _, pdu := range f.State {
			id := verifyPDU(t, w, r, pdu)
			ev := r.Event(id)
			if ev == nil {
				t.Fatalf("state event %s is not in the room", id)
			}
			if cid, ok := cur.Get(ev.Type, *ev.StateKey); !ok || cid != id {
				t.Errorf("state event %s (%s %q) is not current state", id, ev.Type, *ev.StateKey)
			}
			want := ev.JSON
			if ev.Redacted {
				want = ev.RedactedJSON
			}
			eqJSON(t, "state PDU "+id, pdu, want)
			stateIDs = append(stateIDs, id)
			if ev.Type == "m.room.member" {
				if serverOfID(*ev.StateKey) == w.ServerName {
					local[*ev.StateKey] = ev.Membership
				} else {
					remote[*ev.StateKey] = ev.Membership
					if ev.Membership == "join" {
						servers[serverOfID(*ev.StateKey)] = true
					}
				}
			}
		}
		var chain []string
		for _, pdu := range f.AuthChain {
			id := verifyPDU(t, w, r, pdu)
			eqJSON(t, "auth PDU "+id, pdu, r.Event(id).JSON)
			chain = append(chain, id)
		}
		eqJSON(t, "auth chain", jsontest.Marshal(t, chain), jsontest.Marshal(t, r.AuthChain(stateIDs, false)))
		if f.JoinedLocalMembers == 0 {
			t.Error("joined_local_members is 0 in a room with local members")
		}
	}
	eqJSON(t, "local members", jsontest.Marshal(t, f.LocalMembers), jsontest.Marshal(t, local))
	eqJSON(t, "remote members", jsontest.Marshal(t, f.RemoteMembers), jsontest.Marshal(t, remote))
	var fw []string
	for s := range servers {
		fw = append(fw, s)
	}
	eqJSON(t, "federated_with", jsontest.Marshal(t, f.FederatedWith), jsontest.Marshal(t, append([]string{}, jsontest.Sorted(fw)...)))
	if r.LocalJoinedNow() && r.CanonicalAlias != "" && (f.CanonicalAlias == nil || *f.CanonicalAlias != r.CanonicalAlias) {
		t.Errorf("canonical alias %v, want %s", f.CanonicalAlias, r.CanonicalAlias)
	}
}
