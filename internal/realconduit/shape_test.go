package realconduit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func TestKeyShape(t *testing.T) {
	for _, c := range []struct {
		key  string
		want string
	}{
		{"keypair", "keypair"},
		{"c", "c"},
		{"@conduit:hs.test", "@conduit"},
		{"@alice:hs.test\xff!abc:hs.test", "@user|!room"},
		{"\xff@conduit:hs.test\xff\x00\x00\x00\x00\x00\x00\x00\x07\xffm.push_rules", "|@conduit|u64|m.push_rules"},
		{"$ev\xffhs.test", "$event|<server>"},
		{"#admins:hs.test", "#alias"},
		{"ABCDEFGHIJ", "text"},
		{"\x01\x02\x03", "bin3"},
	} {
		if got := KeyShape([]byte(c.key), "hs.test"); got != c.want {
			t.Errorf("KeyShape(%q) = %q, want %q", c.key, got, c.want)
		}
	}
}

func TestSchemaAndDiff(t *testing.T) {
	real, err := Schema([]byte(`{"chunk":[{"event_id":"$a","content":{"x":1}},{"event_id":"$b","state_key":""}],"end":"t1","start":"t0"}`))
	if err != nil {
		t.Fatal(err)
	}
	same, _ := Schema([]byte(`{"chunk":[{"event_id":"$c","state_key":"@u","content":{}}],"end":"t9","start":"t8"}`))
	if d := SchemaDiff(same, real, ""); len(d) != 0 {
		t.Errorf("equal shapes differ: %v", d)
	}
	other, _ := Schema([]byte(`{"chunk":[{"event_id":1}],"start":"t8","extra":true}`))
	d := SchemaDiff(other, real, "")
	if len(d) != 5 { // event_id type, state_key and content missing, end missing, extra
		t.Fatalf("SchemaDiff found %d differences, want 5: %v", len(d), d)
	}
	for _, w := range []string{"end: missing", "extra", "event_id", "state_key: missing", "content: missing"} {
		if !strings.Contains(strings.Join(d, "\n"), w) {
			t.Errorf("SchemaDiff does not name %q: %v", w, d)
		}
	}
}

func TestTemplate(t *testing.T) {
	for in, want := range map[string]string{
		"/_matrix/federation/v1/backfill/%21room%3Ahs.test":                  "/_matrix/federation/v1/backfill/{room}",
		"/_matrix/federation/v1/make_join/%21r%3Ahs.test/%40alice%3Ahs.test": "/_matrix/federation/v1/make_join/{room}/{user}",
		"/_matrix/federation/v2/send_join/!r:hs.test/$abc":                   "/_matrix/federation/v2/send_join/{room}/{event}",
		"/_matrix/federation/v1/event/%24AbC_d-e":                            "/_matrix/federation/v1/event/{event}",
		"/_matrix/key/v2/server":                                             "/_matrix/key/v2/server",
	} {
		if got := Template(in); got != want {
			t.Errorf("Template(%s) = %s, want %s", in, got, want)
		}
	}
	q := QueryTemplate(map[string][]string{"v": {"$a", "$b"}, "limit": {"100"}})
	if !reflect.DeepEqual(q, map[string][]string{"v": {"{event}", "{event}"}, "limit": {"100"}}) {
		t.Errorf("QueryTemplate = %v", q)
	}
}

func TestRecorderForwardsAndRecords(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == "PUT" && !strings.Contains(string(body), `"type":"m.room.member"`) {
			http.Error(w, "body not forwarded", 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"origin":"hs.test","pdus":[{"event_id":"$one","room_id":"!r:hs.test"}]}`)
	}))
	defer upstream.Close()
	rec := NewRecorder()
	if err := rec.Start(upstream.URL); err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	req, _ := http.NewRequest("GET", rec.URL+"/_matrix/federation/v1/backfill/%21r%3Ahs.test?v=%24x&limit=100", nil)
	req.Header.Set("Authorization", `X-Matrix origin="hs.test",destination="hs.test",key="ed25519:a",sig="s,ig"`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "$one") {
		t.Fatalf("the recorder did not forward the answer: %s", b)
	}
	resp, err = http.Post(rec.URL+"/x", "application/json", strings.NewReader(`{"type":"m.room.member"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := rec.Requests()
	if len(got) != 2 {
		t.Fatalf("recorded %d requests, want 2", len(got))
	}
	r := got[0]
	if r.Method != "GET" || r.Path != "/_matrix/federation/v1/backfill/%21r%3Ahs.test" || r.Query["limit"][0] != "100" || r.Query["v"][0] != "$x" {
		t.Errorf("recorded %+v", r)
	}
	if !reflect.DeepEqual(r.Authorization, []string{"destination", "key", "origin", "sig"}) {
		t.Errorf("X-Matrix parameters %v", r.Authorization)
	}
	if !reflect.DeepEqual(r.EventIDs, []string{"$one"}) || r.Counts["pdus"] != 1 {
		t.Errorf("answer recorded as %v %v", r.EventIDs, r.Counts)
	}
	if got[1].RequestType != "m.room.member" || !reflect.DeepEqual(got[1].RequestKeys, []string{"type"}) {
		t.Errorf("request body recorded as %v %q", got[1].RequestKeys, got[1].RequestType)
	}
}
