package conduitsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
	"github.com/transition-matrix/transition-matrix/internal/realconduit"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

// recordingsDir holds what real Conduit sent and answered, one directory per Conduit version,
// written by internal/realconduit's tests with TM_CONDUIT_RECORD.
const recordingsDir = "../realconduit/testdata"

// recordings are the recorded Conduit versions (directories holding federation.json, client.json
// and fresh-db.json); the test is skipped when there are none yet.
func recordings(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(recordingsDir, "conduit-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Skipf("no recordings of real Conduit in %s yet (record them with CONDUIT_BIN=... TM_CONDUIT_RECORD=$PWD/internal/realconduit/testdata go test -tags conduit ./internal/realconduit/)", recordingsDir)
	}
	return dirs
}

// readJSON reads a recording; a recording not made yet for this version skips the subtest.
func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Skipf("%s is not recorded yet", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// endpoint is what every request to one method and path template had in common.
type endpoint struct {
	QueryKeys  []string            // sorted union of query parameter names
	Constants  map[string][]string // query values other than event IDs, as sent
	MaxV       int                 // most "v" values (backfill's starting events) in one request
	Auth       []string            // X-Matrix parameter names
	Body       []string            // top-level keys of the request body
	BodyType   string              // the body's event type
	StatusSeen []int
}

func endpoints(reqs []realconduit.RecordedTemplate) map[string]*endpoint {
	out := map[string]*endpoint{}
	for _, r := range reqs {
		key := r.Method + " " + r.PathTemplate
		e := out[key]
		if e == nil {
			e = &endpoint{Constants: map[string][]string{}}
			out[key] = e
		}
		for k, vs := range r.QueryTemplate {
			if !slices.Contains(e.QueryKeys, k) {
				e.QueryKeys = append(e.QueryKeys, k)
				sort.Strings(e.QueryKeys)
			}
			if k == "v" {
				e.MaxV = max(e.MaxV, len(vs))
				continue
			}
			if _, ok := e.Constants[k]; !ok {
				e.Constants[k] = vs
			}
		}
		if r.Authorization != nil {
			e.Auth = r.Authorization
		}
		if r.RequestKeys != nil {
			e.Body, e.BodyType = r.RequestKeys, r.RequestType
		}
		if !containsInt(e.StatusSeen, r.Status) {
			e.StatusSeen = append(e.StatusSeen, r.Status)
		}
	}
	return out
}

// simRun joins one room of a generated world through conduitsim with a recorder in front of the
// shim, pages back to m.room.create, and returns what conduitsim sent.
func simRun(t *testing.T) ([]realconduit.RecordedTemplate, *bed, *world.Room, string) {
	t.Helper()
	b := newBed(t, world.Options{Seed: 11, Rooms: -1, MessagesPerRoom: 250})
	rec := realconduit.NewRecorder()
	if err := rec.Start(b.sim.opts.ShimURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	b.sim.opts.ShimURL = rec.URL
	var room *world.Room
	for _, r := range hostable(b.w) {
		if room == nil || len(r.Events) > len(room.Events) {
			room = r
		}
	}
	if room == nil {
		t.Fatal("the world has no room conduitsim can join")
	}
	user := localMember(b.w, room)
	b.join(t, room, user)
	if _, ok := b.paginate(t, room.ID, user, 100); !ok {
		t.Fatal("conduitsim did not reach m.room.create")
	}
	var out []realconduit.RecordedTemplate
	for _, r := range rec.Requests() {
		out = append(out, realconduit.RecordedTemplate{RecordedRequest: r, PathTemplate: realconduit.Template(r.Path), QueryTemplate: realconduit.QueryTemplate(r.Query)})
	}
	return out, b, room, user
}

// TestFederationRequestsMatchRealConduit holds conduitsim (and conduitlike, which sends its
// backfill and event requests) to the federation requests real Conduit sent the shim: the same
// endpoints, query parameters and constant values, X-Matrix parameters and send_join body.
func TestFederationRequestsMatchRealConduit(t *testing.T) {
	dirs := recordings(t)
	sim, _, _, _ := simRun(t)
	got := endpoints(sim)
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var rec realconduit.FederationRecording
			readJSON(t, filepath.Join(dir, "federation.json"), &rec)
			want := endpoints(rec.Requests)
			for _, problem := range compareEndpoints(got, want) {
				t.Error(problem)
			}
		})
	}
}

// compareEndpoints lists every way the simulator's requests differ from the recorded ones.
func compareEndpoints(got, want map[string]*endpoint) []string {
	var problems []string
	for key, w := range want {
		g, ok := got[key]
		if !ok {
			problems = append(problems, fmt.Sprintf("real Conduit sent %s; conduitsim never does", key))
			continue
		}
		if !reflect.DeepEqual(g.QueryKeys, w.QueryKeys) {
			problems = append(problems, fmt.Sprintf("%s: query parameters %v, real Conduit sends %v", key, g.QueryKeys, w.QueryKeys))
		}
		for k, wv := range w.Constants {
			if gv := g.Constants[k]; !reflect.DeepEqual(gv, wv) {
				problems = append(problems, fmt.Sprintf("%s: %s=%v, real Conduit sends %v", key, k, gv, wv))
			}
		}
		if g.MaxV > w.MaxV {
			problems = append(problems, fmt.Sprintf("%s: up to %d v= values in one request, real Conduit sends at most %d", key, g.MaxV, w.MaxV))
		}
		if !reflect.DeepEqual(g.Auth, w.Auth) {
			problems = append(problems, fmt.Sprintf("%s: X-Matrix parameters %v, real Conduit sends %v", key, g.Auth, w.Auth))
		}
		if !reflect.DeepEqual(g.Body, w.Body) || g.BodyType != w.BodyType {
			problems = append(problems, fmt.Sprintf("%s: body keys %v (%s), real Conduit sends %v (%s)", key, g.Body, g.BodyType, w.Body, w.BodyType))
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			problems = append(problems, fmt.Sprintf("conduitsim sends %s; real Conduit never did", key))
		}
	}
	sort.Strings(problems)
	return problems
}

// TestClientAnswersMatchRealConduit holds conduitsim's client-API answers to the shapes of real
// Conduit's answers to the same requests: status, errcode and the JSON's keys and types.
func TestClientAnswersMatchRealConduit(t *testing.T) {
	dirs := recordings(t)
	_, b, room, user := simRun(t)
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var rec realconduit.ClientRecording
			readJSON(t, filepath.Join(dir, "client.json"), &rec)
			for _, name := range rec.Names() {
				want := rec.Answers[name]
				got := b.clientAnswer(t, name, want.Request, room.ID, user)
				if reason, known := knownClientGaps[name]; known {
					t.Logf("known gap: %s: conduitsim %d %s, real Conduit %d %s (%s)", name, got.Status, got.ErrCode, want.Status, want.ErrCode, reason)
					continue
				}
				if got.Status != want.Status || got.ErrCode != want.ErrCode {
					t.Errorf("%s (%s): conduitsim answers %d %s, real Conduit %d %s", name, want.Request, got.Status, got.ErrCode, want.Status, want.ErrCode)
					continue
				}
				for _, d := range realconduit.SchemaDiff(got.Schema, want.Schema, "") {
					t.Errorf("%s (%s): %s", name, want.Request, d)
				}
			}
		})
	}
}

// clientAnswer sends the recorded request to conduitsim for the given room and user.
func (b *bed) clientAnswer(t *testing.T, name, request, roomID, user string) realconduit.ClientAnswer {
	t.Helper()
	method, tmpl, _ := strings.Cut(request, " ")
	path := strings.ReplaceAll(tmpl, "{room}", url.PathEscape(roomID))
	q := url.Values{}
	token := asToken
	switch name {
	case "client.versions":
		token = ""
	case "error.unknown_token":
		token = "not-a-token"
	case "error.messages_not_joined", "error.join_unknown_room":
		path = strings.ReplaceAll(tmpl, "{room}", url.PathEscape("!nowhere:"+b.w.ServerName))
	}
	if token == asToken {
		q.Set("user_id", user)
	}
	switch name {
	case "client.messages":
		q.Set("dir", "b")
		q.Set("limit", "5")
	case "error.messages_not_joined":
		q.Set("dir", "b")
	case "client.join", "error.join_unknown_room":
		q.Set("server_name", b.w.ServerName)
	}
	u := b.sim.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, _ := http.NewRequest(method, u, nil)
	if method == "POST" {
		req.Body = io.NopCloser(strings.NewReader("{}"))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	ans := realconduit.ClientAnswer{Request: request, Status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			ErrCode string `json:"errcode"`
		}
		_ = json.Unmarshal(raw, &e)
		ans.ErrCode = e.ErrCode
	}
	if ans.Schema, err = realconduit.Schema(raw); err != nil {
		ans.Schema = "not JSON"
	}
	return ans
}

// TestFreshDatabaseMatchesRealConduit holds conduittest.NewFreshDB, which the import's tests and
// the demo take for Conduit's first start, to the database real Conduit's first start made: the
// same tables, and in each the same shapes of keys.
func TestFreshDatabaseMatchesRealConduit(t *testing.T) {
	rdirs := recordings(t)
	dir := t.TempDir()
	if err := conduittest.NewFreshDB(dir, "fresh.test", conduit.Version010); err != nil {
		t.Fatal(err)
	}
	got, err := realconduit.ReadDBShape(dir, "fresh.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, rdir := range rdirs {
		t.Run(filepath.Base(rdir), func(t *testing.T) {
			var want realconduit.DBShape
			readJSON(t, filepath.Join(rdir, "fresh-db.json"), &want)
			for _, d := range realconduit.ShapeDiff(got, want) {
				table := strings.TrimPrefix(strings.SplitN(d, ":", 2)[0], "table ")
				if reason, known := knownFreshDBGaps[table]; known {
					t.Logf("known gap: %s (%s)", d, reason)
					continue
				}
				t.Error(d)
			}
		})
	}
}

// knownClientGaps are the client-API answers in which conduitsim is known to differ from real
// Conduit (recorded from 0.10.12), each with the reason it is left so for now. Any other difference
// fails.
var knownClientGaps = map[string]string{
	"client.messages":           "real Conduit panics (500) on /messages for an appservice request without a device; shim warm now logs each member in through the appservice, conduitsim has no appservice login and keeps answering masquerade",
	"error.messages_not_joined": "the same panic: real Conduit never reaches its membership check for an appservice request without a device",
	"client.state":              "real Conduit's state events carry unsigned (age); conduitsim's have none, and nothing the tool does reads it",
	"error.join_unknown_room":   "real Conduit answers 500 M_UNKNOWN when no server can help with the join, conduitsim 502 M_UNKNOWN; rejoin reports either as failed",
}

// knownFreshDBGaps are the tables in which conduittest.NewFreshDB is known to differ from real
// Conduit's first start (recorded from Conduit 0.10.12), and why that does not matter to the tests
// that use it. Any other difference fails.
var knownFreshDBGaps = map[string]string{
	"referencedevents":                 "the admin room's prev_event references; the import never reads or writes them",
	"roomuserid_lastprivatereadupdate": "@conduit's read marker in the admin room; not read by the import",
	"roomuserid_privateread":           "@conduit's read marker in the admin room; not read by the import",
	"shorteventid_shortstatehash":      "the admin room's state snapshots; the import writes no room state",
	"shortstatehash_statediff":         "the admin room's state snapshots; the import writes no room state",
	"shortstatekey_statekey":           "short IDs of the admin room's state keys; the import writes no room state",
	"statekey_shortstatekey":           "short IDs of the admin room's state keys; the import writes no room state",
	"userroomid_highlightcount":        "@conduit's counts in the admin room (both key orders: Conduit's table-name quirk); not read by the import",
	"userroomid_notificationcount":     "@conduit's counts in the admin room; not read by the import",
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

// TestComparisonsCatchChanges holds the comparisons themselves to account: conduitsim's own
// requests and answers compare clean with themselves, and each kind of change is named.
func TestComparisonsCatchChanges(t *testing.T) {
	sim, b, room, user := simRun(t)
	got := endpoints(sim)
	for _, k := range keys(got) {
		t.Logf("conduitsim sends %s: query %v %v, X-Matrix %v, body %v", k, got[k].QueryKeys, got[k].Constants, got[k].Auth, got[k].Body)
	}
	if p := compareEndpoints(got, endpoints(sim)); len(p) != 0 {
		t.Fatalf("conduitsim's requests differ from themselves: %v", p)
	}
	var backfill string
	for key, e := range got {
		if strings.Contains(key, "/backfill/") && len(e.Constants["limit"]) > 0 {
			backfill = key
		}
	}
	if backfill == "" {
		t.Fatalf("conduitsim sent no /backfill with a limit: %v", keys(got))
	}
	changed := endpoints(sim)
	changed[backfill].Constants["limit"] = []string{"50"}
	changed["GET /_matrix/key/v2/server"] = &endpoint{}
	changed[backfill].Auth = []string{"origin", "sig"}
	p := strings.Join(compareEndpoints(got, changed), "\n")
	for _, want := range []string{"limit=[100], real Conduit sends [50]", "real Conduit sent GET /_matrix/key/v2/server", "X-Matrix parameters"} {
		if !strings.Contains(p, want) {
			t.Errorf("a changed recording was not caught (%q missing) in:\n%s", want, p)
		}
	}

	whoami := b.clientAnswer(t, "client.whoami", "GET /_matrix/client/v3/account/whoami", room.ID, user)
	if d := realconduit.SchemaDiff(whoami.Schema, whoami.Schema, ""); len(d) != 0 {
		t.Fatalf("an answer differs from itself: %v", d)
	}
	other := map[string]any{"user_id": "string", "device_id": "string", "is_guest": "bool"}
	if d := realconduit.SchemaDiff(whoami.Schema, other, ""); len(d) == 0 {
		t.Errorf("whoami %v compared equal to %v", whoami.Schema, other)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
