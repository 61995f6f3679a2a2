package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/transition-matrix/transition-matrix/cutover"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/signing"
)

// userCheck collects one user's findings.
type userCheck struct {
	rep *UserReport
	max int
}

func (u *userCheck) problem(format string, args ...any) {
	if len(u.rep.Problems) < u.max {
		u.rep.Problems = append(u.rep.Problems, fmt.Sprintf(format, args...))
	}
}

// aspect turns counts of missing and differing items into an aspect status.
func aspect(items, missing, differs int) string {
	switch {
	case items == 0:
		return AspectNone
	case missing > 0:
		return UserMissing
	case differs > 0:
		return UserDiffers
	}
	return UserOK
}

// checkUser compares one user with what the export holds of it.
func (v *verifier) checkUser(ctx context.Context, id string) UserReport {
	rep := UserReport{UserID: id, Problems: []string{}}
	u, err := v.cfg.Users.User(ctx, id)
	if err != nil {
		rep.Status, rep.Error = UserError, err.Error()
		return rep
	}
	if u.Deactivated {
		rep.Status = UserSkipped
		rep.Profile, rep.Devices, rep.AccountData, rep.Keys, rep.KeyBackup = AspectNone, AspectNone, AspectNone, AspectNone, AspectNone
		rep.Error = "deactivated"
		return rep
	}
	c := &userCheck{rep: &rep, max: v.cfg.MaxListed}
	steps := []struct {
		into *string
		run  func(context.Context, *exportfmt.UserFile, *userCheck) (string, error)
	}{
		{&rep.Profile, v.checkProfile},
		{&rep.Devices, v.checkDevices},
		{&rep.AccountData, v.checkAccountData},
		{&rep.Keys, v.checkKeys},
		{&rep.KeyBackup, v.checkKeyBackup},
	}
	if v.cfg.Sessions != nil {
		steps = append(steps, struct {
			into *string
			run  func(context.Context, *exportfmt.UserFile, *userCheck) (string, error)
		}{&rep.Sessions, v.checkSessions})
	}
	var errs []string
	refused := false
	for _, s := range steps {
		st, err := s.run(ctx, u, c)
		switch {
		case errors.Is(err, cutover.ErrForbidden):
			// The target refuses to act as the user: it does not have the account.
			st = UserMissing
			if !refused {
				refused = true
				c.problem("the target refuses to act as this user (not imported, or outside the appservice's namespace): %v", err)
			}
		case err != nil:
			st = UserError
			errs = append(errs, err.Error())
		}
		*s.into = st
	}
	rep.Status = UserOK
	for _, st := range []string{rep.Profile, rep.Devices, rep.AccountData, rep.Keys, rep.KeyBackup, rep.Sessions} {
		rep.Status = worse(rep.Status, st)
	}
	if len(errs) > 0 {
		rep.Error = strings.Join(errs, "; ")
	}
	return rep
}

var severity = map[string]int{UserOK: 0, AspectNone: 0, UserDiffers: 1, UserMissing: 2, UserError: 3}

func worse(a, b string) string {
	if severity[b] > severity[a] {
		return b
	}
	return a
}

// checkProfile compares the display name and avatar.
func (v *verifier) checkProfile(ctx context.Context, u *exportfmt.UserFile, c *userCheck) (string, error) {
	var fields []string
	for _, f := range []string{"displayname", "avatar_url"} {
		if r := gjson.GetBytes(u.Profile, f); r.Exists() && r.Type != gjson.Null {
			fields = append(fields, f)
		}
	}
	if len(fields) == 0 {
		return AspectNone, nil
	}
	got, err := v.cfg.Target.Profile(ctx, u.UID)
	if errors.Is(err, cutover.ErrNotFound) {
		c.problem("profile: not on the target")
		return UserMissing, nil
	}
	if err != nil {
		return "", fmt.Errorf("profile: %w", err)
	}
	missing, differs := 0, 0
	for _, f := range fields {
		w, g := gjson.GetBytes(u.Profile, f), gjson.GetBytes(got, f)
		switch {
		case !g.Exists() || g.Type == gjson.Null:
			missing++
			c.problem("profile %s: missing", f)
		case w.String() != g.String():
			differs++
			c.problem("profile %s: differs", f)
		}
	}
	return aspect(len(fields), missing, differs), nil
}

// checkDevices compares device IDs and display names.
func (v *verifier) checkDevices(ctx context.Context, u *exportfmt.UserFile, c *userCheck) (string, error) {
	if len(u.Devices) == 0 {
		return AspectNone, nil
	}
	got, err := v.cfg.Target.Devices(ctx, u.UID)
	if err != nil {
		return "", fmt.Errorf("devices: %w", err)
	}
	have := map[string]cutover.Device{}
	for _, d := range got {
		have[d.DeviceID] = d
	}
	missing, differs := 0, 0
	for _, raw := range u.Devices {
		var d cutover.Device
		if err := json.Unmarshal(raw, &d); err != nil || d.DeviceID == "" {
			return "", fmt.Errorf("devices: a device in the export has no device_id")
		}
		t, ok := have[d.DeviceID]
		switch {
		case !ok:
			missing++
			c.problem("device %s: missing", d.DeviceID)
		case deref(t.DisplayName) != deref(d.DisplayName):
			differs++
			c.problem("device %s: display name differs", d.DeviceID)
		}
	}
	return aspect(len(u.Devices), missing, differs), nil
}

// checkSessions reports the exported devices that have no access token in the target's database:
// their users must log in on them again (no -synapse-db at import, or Synapse had no token).
func (v *verifier) checkSessions(_ context.Context, u *exportfmt.UserFile, c *userCheck) (string, error) {
	if len(u.Devices) == 0 {
		return AspectNone, nil
	}
	tokens, err := v.cfg.Sessions.AccessTokens(u.UID)
	if err != nil {
		return "", fmt.Errorf("sessions: %w", err)
	}
	missing := 0
	for _, raw := range u.Devices {
		id := gjson.GetBytes(raw, "device_id").String()
		if tokens[id] == "" {
			missing++
			c.problem("device %s: no session on the target, it must log in again", id)
		}
	}
	return aspect(len(u.Devices), missing, 0), nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// checkAccountData compares every global and room account data type the export holds.
func (v *verifier) checkAccountData(ctx context.Context, u *exportfmt.UserFile, c *userCheck) (string, error) {
	items, missing, differs := 0, 0, 0
	one := func(roomID, typ string, want json.RawMessage) error {
		items++
		where := typ
		if roomID != "" {
			where = roomID + " " + typ
		}
		got, err := v.cfg.Target.AccountData(ctx, u.UID, roomID, typ)
		if errors.Is(err, cutover.ErrNotFound) {
			missing++
			c.problem("account data %s: missing", where)
			return nil
		}
		if err != nil {
			return fmt.Errorf("account data %s: %w", where, err)
		}
		var same bool
		if typ == "m.push_rules" && roomID == "" {
			var diffs []string
			diffs, err = comparePushRules(want, got)
			same = len(diffs) == 0
			if !same {
				c.problem("account data m.push_rules: %s", strings.Join(diffs, ", "))
			}
		} else {
			same, err = canonicalEqual(want, got)
			if err == nil && !same {
				c.problem("account data %s: differs", where)
			}
		}
		if err != nil {
			return fmt.Errorf("account data %s: %w", where, err)
		}
		if !same {
			differs++
		}
		return nil
	}
	for _, typ := range sortedKeys(u.AccountData.Global) {
		if err := one("", typ, u.AccountData.Global[typ]); err != nil {
			return "", err
		}
	}
	for _, room := range sortedKeys(u.AccountData.Rooms) {
		for _, typ := range sortedKeys(u.AccountData.Rooms[room]) {
			if err := one(room, typ, u.AccountData.Rooms[room][typ]); err != nil {
				return "", err
			}
		}
	}
	return aspect(items, missing, differs), nil
}

// checkKeys compares device keys and cross-signing keys byte for byte in canonical JSON
// (without "unsigned", which servers fill in as they answer).
func (v *verifier) checkKeys(ctx context.Context, u *exportfmt.UserFile, c *userCheck) (string, error) {
	type pair struct {
		name      string
		want, got json.RawMessage
	}
	var wants []pair
	for _, dev := range sortedKeys(u.E2E.DeviceKeys) {
		wants = append(wants, pair{name: "device keys of " + dev, want: u.E2E.DeviceKeys[dev]})
	}
	for _, k := range []pair{{"master key", u.E2E.MasterKey, nil}, {"self-signing key", u.E2E.SelfSigningKey, nil}, {"user-signing key", u.E2E.UserSigningKey, nil}} {
		if present(k.want) {
			wants = append(wants, k)
		}
	}
	if len(wants) == 0 {
		return AspectNone, nil
	}
	keys, err := v.cfg.Target.QueryKeys(ctx, u.UID)
	if err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	missing, differs := 0, 0
	for _, w := range wants {
		var got json.RawMessage
		switch {
		case strings.HasPrefix(w.name, "device keys of "):
			got = keys.DeviceKeys[strings.TrimPrefix(w.name, "device keys of ")]
		case w.name == "master key":
			got = keys.MasterKey
		case w.name == "self-signing key":
			got = keys.SelfSigningKey
		default:
			got = keys.UserSigningKey
		}
		if !present(got) {
			missing++
			c.problem("%s: missing", w.name)
			continue
		}
		same, err := keysMatch(u.UID, withoutUnsigned(w.want), withoutUnsigned(got))
		if err != nil {
			return "", fmt.Errorf("keys: %s: %w", w.name, err)
		}
		if !same {
			differs++
			c.problem("%s: differs", w.name)
		}
	}
	return aspect(len(wants), missing, differs), nil
}

// keysMatch says whether the target's key is the exported one: equal but for signatures other
// users made on it, which the import adds from Synapse's database (an export made as the user
// cannot see them: /keys/query shows bob's signature on alice's key only to bob).
func keysMatch(owner string, want, got json.RawMessage) (bool, error) {
	var w, g map[string]json.RawMessage
	if err := json.Unmarshal(want, &w); err != nil {
		return false, err
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return false, err
	}
	var ws, gs map[string]map[string]string
	if raw, ok := w["signatures"]; ok {
		if err := json.Unmarshal(raw, &ws); err != nil {
			return false, err
		}
	}
	if raw, ok := g["signatures"]; ok {
		if err := json.Unmarshal(raw, &gs); err != nil {
			return false, err
		}
	}
	delete(w, "signatures")
	delete(g, "signatures")
	wb, _ := json.Marshal(w)
	gb, _ := json.Marshal(g)
	if same, err := canonicalEqual(wb, gb); err != nil || !same {
		return false, err
	}
	for signer, sigs := range gs {
		if signer != owner && len(ws[signer]) == 0 {
			continue // added by the import, from another user
		}
		if !maps.Equal(sigs, ws[signer]) {
			return false, nil
		}
	}
	for signer, sigs := range ws {
		if !maps.Equal(sigs, gs[signer]) {
			return false, nil
		}
	}
	return true, nil
}

// checkKeyBackup checks that the current backup version is there with the same algorithm,
// auth data and session count; the sessions themselves are not read.
func (v *verifier) checkKeyBackup(ctx context.Context, u *exportfmt.UserFile, c *userCheck) (string, error) {
	want := u.E2E.KeyBackup
	if want == nil {
		return AspectNone, nil
	}
	got, err := v.cfg.Target.KeyBackup(ctx, u.UID)
	if err != nil {
		return "", fmt.Errorf("key backup: %w", err)
	}
	if got == nil {
		c.problem("key backup version %s: missing", want.Version)
		return UserMissing, nil
	}
	var diffs []string
	if got.Version != want.Version {
		diffs = append(diffs, "version")
	}
	if got.Algorithm != want.Algorithm {
		diffs = append(diffs, "algorithm")
	}
	if same, err := canonicalEqual(want.AuthData, got.AuthData); err != nil || !same {
		diffs = append(diffs, "auth_data")
	}
	if got.Count != want.Count {
		diffs = append(diffs, fmt.Sprintf("session count (%d, expected %d)", got.Count, want.Count))
	}
	if len(diffs) > 0 {
		c.problem("key backup version %s: %s differ", want.Version, strings.Join(diffs, ", "))
		return UserDiffers, nil
	}
	return UserOK, nil
}

func present(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && !bytes.Equal(t, []byte("null"))
}

func withoutUnsigned(raw json.RawMessage) json.RawMessage {
	if !gjson.GetBytes(raw, "unsigned").Exists() {
		return raw
	}
	out, err := sjson.DeleteBytes(raw, "unsigned")
	if err != nil {
		return raw
	}
	return out
}

// canonicalEqual reports whether two JSON values are the same in canonical JSON.
func canonicalEqual(a, b json.RawMessage) (bool, error) {
	ca, err := signing.CanonicalJSON(a)
	if err != nil {
		return false, err
	}
	cb, err := signing.CanonicalJSON(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ca, cb), nil
}

// pushRuleKinds are the kinds of a push ruleset, highest priority first.
var pushRuleKinds = []string{"override", "content", "room", "sender", "underride"}

// comparePushRules compares two m.push_rules contents rule by rule. A user's own rules must be
// there with the same actions, conditions and pattern; a server-default rule (ID starting with
// ".") only has to keep its enabled flag and actions, since servers ship their own versions of
// them, and may be absent when it was enabled (the target's default then applies).
func comparePushRules(want, got json.RawMessage) ([]string, error) {
	if !gjson.ValidBytes(got) {
		return nil, errors.New("the target's push rules are not JSON")
	}
	var diffs []string
	for _, kind := range pushRuleKinds {
		have := map[string]gjson.Result{}
		for _, r := range gjson.GetBytes(got, "global."+kind).Array() {
			have[r.Get("rule_id").String()] = r
		}
		for _, w := range gjson.GetBytes(want, "global."+kind).Array() {
			id := w.Get("rule_id").String()
			g, ok := have[id]
			def := strings.HasPrefix(id, ".")
			switch {
			case !ok && def && w.Get("enabled").Bool():
			case !ok:
				diffs = append(diffs, kind+" rule "+id+" missing")
			case w.Get("enabled").Bool() != g.Get("enabled").Bool() || !sameJSON(w.Get("actions"), g.Get("actions")):
				diffs = append(diffs, kind+" rule "+id+" differs")
			case !def && (!sameJSON(w.Get("conditions"), g.Get("conditions")) || w.Get("pattern").String() != g.Get("pattern").String()):
				diffs = append(diffs, kind+" rule "+id+" differs")
			}
		}
	}
	sort.Strings(diffs)
	return diffs, nil
}

func sameJSON(a, b gjson.Result) bool {
	if !a.Exists() || !b.Exists() {
		return a.Exists() == b.Exists()
	}
	same, err := canonicalEqual(json.RawMessage(a.Raw), json.RawMessage(b.Raw))
	return err == nil && same
}
