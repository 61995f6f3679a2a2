//go:build conduit

package realconduit

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// StepSummary is one line per shim command: its arguments, exit code and duration.
func (m *Migration) StepSummary() string {
	var b strings.Builder
	for _, st := range m.Steps {
		fmt.Fprintf(&b, "  shim %-60s exit %d  %s\n", truncate(strings.Join(st.Args, " "), 60), st.ExitCode, st.Took.Round(1e6))
	}
	return b.String()
}

// Record writes the recordings of this run to dir/<conduit version>/: federation.json (what
// Conduit sent to the shim) and client.json (its client-API answers).
func (m *Migration) Record(ctx context.Context, dir string, seeded *Seeded) error {
	version, err := ConduitVersion(ctx, m.Conduit.URL)
	if err != nil {
		return err
	}
	out := filepath.Join(dir, versionDir(version))
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	fed := FederationRecording{ConduitVersion: version}
	for _, r := range m.Recorder.Requests() {
		fed.Requests = append(fed.Requests, RecordedTemplate{RecordedRequest: r, PathTemplate: Template(r.Path), QueryTemplate: QueryTemplate(r.Query)})
	}
	if err := WriteJSON(filepath.Join(out, "federation.json"), fed); err != nil {
		return err
	}
	cl, err := m.recordClient(ctx, version, seeded)
	if err != nil {
		return err
	}
	return WriteJSON(filepath.Join(out, "client.json"), cl)
}

// recordClient asks Conduit, as the appservice acting for a local member, what conduitsim imitates.
func (m *Migration) recordClient(ctx context.Context, version string, seeded *Seeded) (*ClientRecording, error) {
	c := NewClient(m.Conduit.URL)
	user := seeded.Users[0].ID
	room := seeded.LargeRoom
	as := "?user_id=" + url.QueryEscape(user)
	tok := m.Appservice.ASToken
	reqs := []struct{ name, method, path, token string }{
		{"client.versions", "GET", "/_matrix/client/versions", ""},
		{"client.whoami", "GET", "/_matrix/client/v3/account/whoami" + as, tok},
		{"client.join", "POST", "/_matrix/client/v3/join/" + Esc(room) + as + "&server_name=" + url.QueryEscape(m.Source.ServerName), tok},
		{"client.messages", "GET", "/_matrix/client/v3/rooms/" + Esc(room) + "/messages" + as + "&dir=b&limit=5", tok},
		{"client.state", "GET", "/_matrix/client/v3/rooms/" + Esc(room) + "/state" + as, tok},
		{"client.joined_members", "GET", "/_matrix/client/v3/rooms/" + Esc(room) + "/joined_members" + as, tok},
		{"client.joined_rooms", "GET", "/_matrix/client/v3/joined_rooms" + as, tok},
		{"error.unknown_token", "GET", "/_matrix/client/v3/joined_rooms", "not-a-token"},
		{"error.messages_not_joined", "GET", "/_matrix/client/v3/rooms/" + Esc("!nowhere:"+m.Source.ServerName) + "/messages" + as + "&dir=b", tok},
		{"error.join_unknown_room", "POST", "/_matrix/client/v3/join/" + Esc("!nowhere:"+m.Source.ServerName) + as + "&server_name=" + url.QueryEscape(m.Source.ServerName), tok},
	}
	rec := &ClientRecording{ConduitVersion: version, Answers: map[string]ClientAnswer{}}
	for _, r := range reqs {
		var body any
		if r.method == "POST" {
			body = map[string]any{}
		}
		raw, err := c.Raw(ctx, r.method, r.path, r.token, body)
		ans := ClientAnswer{Request: r.method + " " + Template(strings.SplitN(r.path, "?", 2)[0]), Status: 200}
		if se, ok := err.(*StatusError); ok {
			ans.Status = se.Status
			var e struct {
				ErrCode string `json:"errcode"`
			}
			_ = jsonUnmarshal(raw, &e)
			ans.ErrCode = e.ErrCode
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", r.name, err)
		}
		if ans.Schema, err = Schema(raw); err != nil {
			ans.Schema = "not JSON"
		}
		rec.Answers[r.name] = ans
	}
	return rec, nil
}
