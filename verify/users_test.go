package verify

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/cutover"
	"github.com/transition-matrix/transition-matrix/exportfmt"
)

const pushRules = `{"global":{"override":[{"rule_id":".m.rule.master","default":true,"enabled":false,"actions":[],"conditions":[]},
{"rule_id":".m.rule.suppress_notices","default":true,"enabled":true,"actions":["dont_notify"],"conditions":[{"kind":"event_match","key":"content.msgtype","pattern":"m.notice"}]}],
"content":[{"rule_id":"coffee","default":false,"enabled":true,"pattern":"coffee","actions":["notify"]}],"room":[],"sender":[],"underride":[]}}`

// exportedUser is a user with one of everything verify compares.
func exportedUser(id string) *exportfmt.UserFile {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	return &exportfmt.UserFile{
		UID:     id,
		Profile: raw(`{"displayname":"Alice","avatar_url":"mxc://example.org/a"}`),
		Devices: []json.RawMessage{raw(`{"device_id":"AAA","display_name":"phone","last_seen_ip":"10.0.0.1"}`),
			raw(`{"device_id":"BBB","display_name":null}`)},
		AccountData: exportfmt.AccountData{
			Global: map[string]json.RawMessage{"m.direct": raw(`{"@bob:example.org":["!d:example.org"]}`), "m.push_rules": raw(pushRules)},
			Rooms:  map[string]map[string]json.RawMessage{"!a:example.org": {"m.tag": raw(`{"tags":{"m.favourite":{"order":0.5}}}`)}},
		},
		E2E: exportfmt.E2E{
			DeviceKeys:     map[string]json.RawMessage{"AAA": raw(`{"user_id":"` + id + `","device_id":"AAA","keys":{"ed25519:AAA":"k"},"signatures":{}}`)},
			MasterKey:      raw(`{"user_id":"` + id + `","usage":["master"],"keys":{"ed25519:m":"m"}}`),
			SelfSigningKey: raw(`null`),
			KeyBackup: &exportfmt.KeyBackup{Version: "3", Algorithm: "m.megolm_backup.v1.curve25519-aes-sha2",
				AuthData: raw(`{"public_key":"pk","signatures":{}}`), Count: 12, Rooms: map[string]map[string]json.RawMessage{"!a:example.org": {"s": raw(`{"session_data":"SECRET-SESSION"}`)}}},
		},
		PasswordHash: strp("$2b$12$SECRETHASHSECRETHASHSECRETHASHSECRETHASHSECRETHASH"),
	}
}

// holdUser gives the fake target exactly what the export holds of u, reordered and with the
// fields servers add.
func holdUser(tgt *fakeTarget, u *exportfmt.UserFile) {
	id := u.UID
	tgt.profiles[id] = json.RawMessage(`{"avatar_url":"mxc://example.org/a","displayname":"Alice"}`)
	tgt.devices[id] = []cutover.Device{{DeviceID: "BBB"}, {DeviceID: "AAA", DisplayName: strp("phone")}}
	tgt.accountData[id+"||m.direct"] = json.RawMessage(`{ "@bob:example.org" : [ "!d:example.org" ] }`)
	// The target's own default rules come along; its copy of a default rule has other conditions.
	tgt.accountData[id+"||m.push_rules"] = json.RawMessage(`{"global":{"override":[{"rule_id":".m.rule.master","default":true,"enabled":false,"actions":[]},
{"rule_id":".m.rule.is_room_mention","default":true,"enabled":true,"actions":["notify"]}],
"content":[{"rule_id":"coffee","default":false,"enabled":true,"pattern":"coffee","actions":["notify"]}],"room":[],"sender":[],"underride":[]}}`)
	tgt.accountData[id+"|!a:example.org|m.tag"] = json.RawMessage(`{"tags":{"m.favourite":{"order":0.5}}}`)
	tgt.keys[id] = &cutover.Keys{DeviceKeys: map[string]json.RawMessage{"AAA": json.RawMessage(`{"device_id":"AAA","user_id":"` + id + `","keys":{"ed25519:AAA":"k"},"signatures":{},"unsigned":{"device_display_name":"phone"}}`)},
		MasterKey: json.RawMessage(`{"usage":["master"],"user_id":"` + id + `","keys":{"ed25519:m":"m"}}`)}
	tgt.backups[id] = &cutover.KeyBackupVersion{Version: "3", Algorithm: "m.megolm_backup.v1.curve25519-aes-sha2", AuthData: json.RawMessage(`{"signatures":{},"public_key":"pk"}`), Count: 12, ETag: "9"}
}

func userReport(t *testing.T, rep *Report, id string) UserReport {
	t.Helper()
	for _, u := range rep.Users {
		if u.UserID == id {
			return u
		}
	}
	t.Fatalf("user %s not in the report", id)
	return UserReport{}
}

func TestUserWhole(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	src.users[alice] = exportedUser(alice)
	holdUser(tgt, src.users[alice])
	rep := run(t, src, tgt)
	got := userReport(t, rep, alice)
	if got.Status != UserOK || got.Profile != UserOK || got.Devices != UserOK || got.AccountData != UserOK || got.Keys != UserOK || got.KeyBackup != UserOK {
		t.Fatalf("user report %+v", got)
	}
	if rep.Result != ResultOK {
		t.Errorf("result %s", rep.Result)
	}
}

func TestUserDifferences(t *testing.T) {
	cases := []struct {
		name    string
		change  func(tgt *fakeTarget)
		status  string
		aspect  func(UserReport) string
		problem string
	}{
		{"device missing", func(tgt *fakeTarget) { tgt.devices[alice] = tgt.devices[alice][1:] }, UserMissing,
			func(u UserReport) string { return u.Devices }, "device BBB: missing"},
		{"device renamed", func(tgt *fakeTarget) { tgt.devices[alice][1].DisplayName = strp("laptop") }, UserDiffers,
			func(u UserReport) string { return u.Devices }, "device AAA: display name differs"},
		{"account data differs", func(tgt *fakeTarget) { tgt.accountData[alice+"||m.direct"] = json.RawMessage(`{}`) }, UserDiffers,
			func(u UserReport) string { return u.AccountData }, "account data m.direct: differs"},
		{"room tag missing", func(tgt *fakeTarget) { delete(tgt.accountData, alice+"|!a:example.org|m.tag") }, UserMissing,
			func(u UserReport) string { return u.AccountData }, "account data !a:example.org m.tag: missing"},
		{"own push rule lost", func(tgt *fakeTarget) {
			tgt.accountData[alice+"||m.push_rules"] = json.RawMessage(`{"global":{"override":[{"rule_id":".m.rule.master","enabled":false,"actions":[]}]}}`)
		}, UserDiffers, func(u UserReport) string { return u.AccountData }, "content rule coffee missing"},
		{"muted default rule enabled", func(tgt *fakeTarget) {
			tgt.accountData[alice+"||m.push_rules"] = json.RawMessage(`{"global":{"override":[{"rule_id":".m.rule.master","enabled":true,"actions":[]}],"content":[{"rule_id":"coffee","enabled":true,"pattern":"coffee","actions":["notify"]}]}}`)
		}, UserDiffers, func(u UserReport) string { return u.AccountData }, "override rule .m.rule.master differs"},
		{"device keys differ", func(tgt *fakeTarget) {
			tgt.keys[alice].DeviceKeys["AAA"] = json.RawMessage(`{"device_id":"AAA","user_id":"` + alice + `","keys":{"ed25519:AAA":"other"},"signatures":{}}`)
		}, UserDiffers, func(u UserReport) string { return u.Keys }, "device keys of AAA: differs"},
		{"master key missing", func(tgt *fakeTarget) { tgt.keys[alice].MasterKey = nil }, UserMissing,
			func(u UserReport) string { return u.Keys }, "master key: missing"},
		{"backup missing", func(tgt *fakeTarget) { delete(tgt.backups, alice) }, UserMissing,
			func(u UserReport) string { return u.KeyBackup }, "key backup version 3: missing"},
		{"backup short", func(tgt *fakeTarget) { tgt.backups[alice].Count = 2 }, UserDiffers,
			func(u UserReport) string { return u.KeyBackup }, "key backup version 3: session count (2, expected 12) differ"},
		{"profile lost", func(tgt *fakeTarget) { tgt.profiles[alice] = json.RawMessage(`{"avatar_url":"mxc://example.org/a"}`) }, UserMissing,
			func(u UserReport) string { return u.Profile }, "profile displayname: missing"},
		{"user unknown", func(tgt *fakeTarget) { delete(tgt.profiles, alice) }, UserMissing,
			func(u UserReport) string { return u.Profile }, "profile: not on the target"},
		{"user refused", func(tgt *fakeTarget) { tgt.refuse = map[string]bool{alice: true} }, UserMissing,
			func(u UserReport) string { return u.Devices + u.KeyBackup[:0] }, "the target refuses to act as this user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, tgt := newMemSource(), newFakeTarget()
			src.users[alice] = exportedUser(alice)
			holdUser(tgt, src.users[alice])
			c.change(tgt)
			rep := run(t, src, tgt)
			got := userReport(t, rep, alice)
			if got.Status != c.status || c.aspect(got) != c.status {
				t.Fatalf("user report %+v: want status %s", got, c.status)
			}
			if !strings.Contains(strings.Join(got.Problems, "\n"), c.problem) {
				t.Errorf("problems %q do not name %q", got.Problems, c.problem)
			}
			if rep.Result != ResultMissing {
				t.Errorf("result %s", rep.Result)
			}
		})
	}
}

func TestUserSkippedAndNothingToCompare(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	src.users[bob] = &exportfmt.UserFile{UID: bob, Deactivated: true}
	src.users[alice] = &exportfmt.UserFile{UID: alice, Profile: json.RawMessage(`{}`)}
	rep := run(t, src, tgt)
	if got := userReport(t, rep, bob); got.Status != UserSkipped {
		t.Errorf("deactivated: %+v", got)
	}
	if got := userReport(t, rep, alice); got.Status != UserOK || got.Devices != AspectNone || got.Keys != AspectNone {
		t.Errorf("user with nothing: %+v", got)
	}
	if rep.Result != ResultOK || rep.Summary.UsersSkipped != 1 {
		t.Errorf("result %s summary %+v", rep.Result, rep.Summary)
	}
}

// fakeSessions is the target's database as far as sessions go: user → device → token.
type fakeSessions map[string]map[string]string

func (f fakeSessions) AccessTokens(user string) (map[string]string, error) { return f[user], nil }

// TestUserSessions checks that a device without an access token in the target's database is
// named, and that the check is left out without a database.
func TestUserSessions(t *testing.T) {
	src, tgt := newMemSource(), newFakeTarget()
	src.users[alice] = exportedUser(alice)
	holdUser(tgt, src.users[alice])

	whole := run(t, src, tgt, func(c *Config) { c.Sessions = fakeSessions{alice: {"AAA": "syt_a", "BBB": "syt_b"}} })
	if got := userReport(t, whole, alice); got.Sessions != UserOK || got.Status != UserOK {
		t.Fatalf("every device has a session: %+v", got)
	}

	lost := run(t, src, tgt, func(c *Config) { c.Sessions = fakeSessions{alice: {"AAA": "syt_a"}} })
	got := userReport(t, lost, alice)
	if got.Sessions != UserMissing || got.Status != UserMissing || lost.Result != ResultMissing {
		t.Fatalf("a device lost its session: %+v, result %s", got, lost.Result)
	}
	if len(got.Problems) != 1 || !strings.Contains(got.Problems[0], "device BBB: no session") {
		t.Fatalf("problems %q", got.Problems)
	}
	for _, p := range got.Problems {
		if strings.Contains(p, "syt_") {
			t.Fatalf("a token leaked into the report: %q", p)
		}
	}

	if got := userReport(t, run(t, src, tgt), alice); got.Sessions != "" {
		t.Fatalf("sessions checked without a database: %q", got.Sessions)
	}
}
