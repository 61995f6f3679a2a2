//go:build conduit

package realconduit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
)

// Check compares, user by user, what Conduit's client API answers after the cutover with what the
// same user saw on Synapse; every difference is a t.Errorf naming the user and the item.
// Password logins come last (each makes a new device).
func (s *Snapshot) Check(ctx context.Context, t testing.TB, target *Server) {
	t.Helper()
	c := NewClient(target.URL)
	for _, us := range s.Users {
		us.check(ctx, t, c)
	}
	for _, us := range s.Users {
		us.checkPassword(ctx, t, c, target)
	}
}

func (us *UserSnapshot) check(ctx context.Context, t testing.TB, c *Client) {
	t.Helper()
	tok := us.AccessToken
	errorf := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: "+format, append([]any{us.ID}, args...)...)
	}

	var who struct {
		UserID   string `json:"user_id"`
		DeviceID string `json:"device_id"`
	}
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/account/whoami", tok, nil, &who); err != nil {
		errorf("the Synapse access token does not work on Conduit: %v", err)
		return
	}
	if who.UserID != us.ID || (us.DeviceID != "" && who.DeviceID != us.DeviceID) {
		errorf("the old token is %s device %q on Conduit, want %s device %q", who.UserID, who.DeviceID, us.ID, us.DeviceID)
	}
	if _, err := c.Raw(ctx, "GET", "/_matrix/client/v3/sync?timeout=0", tok, nil); err != nil {
		errorf("/sync with the old token: %v", err)
	}

	devices, cs, err := queryKeys(ctx, c, tok, us.ID)
	if err != nil {
		errorf("/keys/query: %v", err)
	} else {
		for dev, want := range us.DeviceKeys {
			if got, ok := devices[dev]; !ok {
				errorf("/keys/query has no keys for device %s", dev)
			} else if !bytes.Equal(got, want) {
				errorf("device %s keys differ:\n conduit %s\n synapse %s", dev, got, want)
			}
		}
		for name, want := range us.CrossSigning {
			if got := cs[name]; !bytes.Equal(got, want) {
				errorf("%s cross-signing key differs:\n conduit %s\n synapse %s", name, got, want)
			}
		}
	}

	backup, err := readBackup(ctx, c, tok)
	switch {
	case err != nil:
		errorf("key backup: %v", err)
	case us.Backup == nil && backup != nil:
		errorf("Conduit has a key backup Synapse did not have")
	case us.Backup != nil && backup == nil:
		errorf("the key backup is missing on Conduit")
	case us.Backup != nil:
		if backup.Algorithm != us.Backup.Algorithm || !bytes.Equal(backup.AuthData, us.Backup.AuthData) {
			errorf("key backup version differs: conduit %s %s, synapse %s %s", backup.Algorithm, backup.AuthData, us.Backup.Algorithm, us.Backup.AuthData)
		}
		if !bytes.Equal(backup.Keys, us.Backup.Keys) {
			errorf("key backup sessions differ:\n conduit %s\n synapse %s", truncate(string(backup.Keys), 600), truncate(string(us.Backup.Keys), 600))
		}
	}

	var rules json.RawMessage
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/pushrules/", tok, nil, &rules); err != nil {
		errorf("/pushrules/: %v", err)
	} else if diff := ruleDiff(canonical(rules), canonical(us.PushRules)); diff != "" {
		errorf("push rules differ: %s", diff)
	}

	var pushers struct {
		Pushers []json.RawMessage `json:"pushers"`
	}
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/pushers", tok, nil, &pushers); err != nil {
		errorf("/pushers: %v", err)
	} else if got, want := sortedJSON(withoutEmptyProfileTag(pushers.Pushers)), sortedJSON(withoutEmptyProfileTag(us.Pushers)); got != want {
		errorf("pushers differ:\n conduit %s\n synapse %s", got, want)
	}

	for typ, want := range us.AccountData {
		if typ == "m.push_rules" {
			continue // compared through /pushrules/
		}
		var got json.RawMessage
		if err := c.Do(ctx, "GET", "/_matrix/client/v3/user/"+Esc(us.ID)+"/account_data/"+Esc(typ), tok, nil, &got); err != nil {
			errorf("account data %s: %v", typ, err)
		} else if !bytes.Equal(canonical(got), canonical(want)) {
			errorf("account data %s differs:\n conduit %s\n synapse %s", typ, got, want)
		}
	}
	for room, byType := range us.RoomAccountData {
		for typ, want := range byType {
			if typ == "m.tag" {
				continue // compared through /tags
			}
			var got json.RawMessage
			if err := c.Do(ctx, "GET", "/_matrix/client/v3/user/"+Esc(us.ID)+"/rooms/"+Esc(room)+"/account_data/"+Esc(typ), tok, nil, &got); err != nil {
				errorf("room %s account data %s: %v", room, typ, err)
			} else if !bytes.Equal(canonical(got), canonical(want)) {
				errorf("room %s account data %s differs:\n conduit %s\n synapse %s", room, typ, got, want)
			}
		}
	}
	for room, want := range us.Tags {
		var got json.RawMessage
		if err := c.Do(ctx, "GET", "/_matrix/client/v3/user/"+Esc(us.ID)+"/rooms/"+Esc(room)+"/tags", tok, nil, &got); err != nil {
			errorf("room %s tags: %v", room, err)
		} else if !bytes.Equal(canonical(got), canonical(want)) {
			errorf("room %s tags differ: conduit %s, synapse %s", room, got, want)
		}
	}

	for mxc, want := range us.Media {
		if got, err := DownloadSum(ctx, c, tok, mxc); err != nil {
			errorf("media %s: %v", mxc, err)
		} else if got != want {
			errorf("media %s: sha256 %s on Conduit, %s on Synapse", mxc, got, want)
		}
	}

	for room, want := range us.Rooms {
		got, err := History(ctx, c, tok, room)
		if err != nil {
			errorf("room %s: %v", room, err)
			continue
		}
		if diff := historyDiff(got, want, us.ID); diff != "" {
			errorf("room %s: the history on Conduit is not what the user saw on Synapse: %s", room, diff)
		}
	}
}

// checkPassword logs in with the Synapse password and reads the stored hash from Conduit's
// database: the bcrypt fallback must have replaced it by argon2.
func (us *UserSnapshot) checkPassword(ctx context.Context, t testing.TB, c *Client, target *Server) {
	t.Helper()
	if us.Password == "" {
		return
	}
	body := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": us.ID}, "password": us.Password}
	var login struct {
		UserID string `json:"user_id"`
	}
	if err := c.Do(ctx, "POST", "/_matrix/client/v3/login", "", body, &login); err != nil {
		t.Errorf("%s: password login on Conduit: %v", us.ID, err)
		return
	}
	if login.UserID != us.ID {
		t.Errorf("%s: password login gave %s", us.ID, login.UserID)
	}
	hash, err := StoredPasswordHash(target, us.ID)
	if err != nil {
		t.Errorf("%s: %v", us.ID, err)
	} else if !strings.HasPrefix(hash, "$argon2") {
		t.Errorf("%s: after the login the stored hash is %q…, want an argon2 hash", us.ID, prefix(hash, 7))
	}
	// A wrong password must still be refused after the rehash.
	body["password"] = us.Password + "x"
	if err := c.Do(ctx, "POST", "/_matrix/client/v3/login", "", body, nil); err == nil {
		t.Errorf("%s: a wrong password logged in", us.ID)
	}
}

// StoredPasswordHash reads a user's password hash from Conduit's database, read-only (it works
// while Conduit runs).
func StoredPasswordHash(target *Server, user string) (string, error) {
	db, err := conduit.Open(target.DatabasePath, conduit.Options{ServerName: target.ServerName, ReadOnly: true})
	if err != nil {
		return "", fmt.Errorf("opening Conduit's database read-only: %w", err)
	}
	defer db.Close()
	u, ok, err := db.User(user)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("no userid_password row for %s", user)
	}
	return u.PasswordHash, nil
}

// historyDiff compares Conduit's history (newest first) with Synapse's: the same events in the same
// order, except the join events the cutover made on Conduit (a local member joining again).
func historyDiff(got, want []Event, user string) string {
	known := map[string]bool{}
	for _, e := range want {
		known[e.EventID] = true
	}
	var kept []Event
	for _, e := range got {
		if known[e.EventID] {
			kept = append(kept, e)
			continue
		}
		if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == e.Sender && bytes.Contains(e.Content, []byte(`"membership":"join"`)) {
			continue // the rejoin
		}
		return fmt.Sprintf("Conduit has %s %s from %s that Synapse did not show", e.Type, e.EventID, e.Sender)
	}
	if len(kept) != len(want) {
		have := map[string]bool{}
		for _, e := range kept {
			have[e.EventID] = true
		}
		var missing []string
		for _, e := range want {
			if !have[e.EventID] {
				missing = append(missing, e.Type+" "+e.EventID)
			}
		}
		return fmt.Sprintf("%d of Synapse's %d events are missing, first: %v", len(missing), len(want), missing[:min(3, len(missing))])
	}
	for i := range want {
		if kept[i].EventID != want[i].EventID {
			return fmt.Sprintf("order differs at position %d from the newest: %s on Conduit, %s on Synapse", i, kept[i].EventID, want[i].EventID)
		}
		if kept[i].Type != want[i].Type || kept[i].Sender != want[i].Sender || !bytes.Equal(kept[i].Content, want[i].Content) {
			return fmt.Sprintf("event %s differs: conduit %s %s, synapse %s %s", want[i].EventID, kept[i].Type, kept[i].Content, want[i].Type, want[i].Content)
		}
	}
	return ""
}

// ruleDiff names the push rules that differ between two /pushrules/ answers, or "".
func ruleDiff(got, want json.RawMessage) string {
	if bytes.Equal(got, want) {
		return ""
	}
	flatten := func(b json.RawMessage) map[string]string {
		var v struct {
			Global map[string][]map[string]any `json:"global"`
		}
		_ = json.Unmarshal(b, &v)
		out := map[string]string{}
		for kind, rules := range v.Global {
			for _, r := range rules {
				enc, _ := json.Marshal(r)
				out[kind+"/"+fmt.Sprint(r["rule_id"])] = string(enc)
			}
		}
		return out
	}
	g, w := flatten(got), flatten(want)
	var diffs []string
	for id, wr := range w {
		if gr, ok := g[id]; !ok {
			diffs = append(diffs, "missing "+id)
		} else if gr != wr {
			diffs = append(diffs, "changed "+id+": conduit "+gr+" synapse "+wr)
		}
	}
	for id := range g {
		if _, ok := w[id]; !ok {
			diffs = append(diffs, "extra "+id)
		}
	}
	sort.Strings(diffs)
	if len(diffs) == 0 {
		// The same rules: only the order within a kind matters (it is their priority); the order
		// of the kinds in the JSON object does not.
		order := func(b json.RawMessage) map[string][]string {
			var v struct {
				Global map[string][]struct {
					RuleID string `json:"rule_id"`
				} `json:"global"`
			}
			_ = json.Unmarshal(b, &v)
			out := map[string][]string{}
			for kind, rules := range v.Global {
				for _, r := range rules {
					out[kind] = append(out[kind], r.RuleID)
				}
			}
			return out
		}
		og, ow := order(got), order(want)
		for kind, ids := range ow {
			if !slices.Equal(ids, og[kind]) {
				diffs = append(diffs, fmt.Sprintf("%s rules in another order (their priority): conduit %v, synapse %v", kind, og[kind], ids))
			}
		}
		if len(diffs) == 0 {
			return ""
		}
		sort.Strings(diffs)
		return strings.Join(diffs, "; ")
	}
	return strings.Join(diffs, "; ")
}

// withoutEmptyProfileTag drops an empty profile_tag, which the spec makes optional: Synapse
// answers "" and Conduit leaves the key out, for the same pusher.
func withoutEmptyProfileTag(items []json.RawMessage) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		var m map[string]json.RawMessage
		if json.Unmarshal(it, &m) == nil && string(m["profile_tag"]) == `""` {
			delete(m, "profile_tag")
			it, _ = json.Marshal(m)
		}
		out = append(out, it)
	}
	return out
}

func sortedJSON(items []json.RawMessage) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = string(canonical(it))
	}
	sort.Strings(out)
	return "[" + strings.Join(out, ",") + "]"
}

func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
