package signing

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

const goodSig = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"

func TestParseXMatrixAccepts(t *testing.T) {
	want := XMatrix{Origin: "origin.example", Destination: "dest.example", Key: "ed25519:a_b1", Sig: goodSig}
	cases := map[string]string{
		"sender form":              `X-Matrix origin="origin.example",destination="dest.example",key="ed25519:a_b1",sig="` + goodSig + `"`,
		"any order, upper names":   `X-Matrix SIG="` + goodSig + `",Key="ed25519:a_b1",Destination="dest.example",ORIGIN="origin.example"`,
		"lower-case scheme":        `x-matrix origin="origin.example",destination="dest.example",key="ed25519:a_b1",sig="` + goodSig + `"`,
		"spaces and tabs":          "X-Matrix   origin=\"origin.example\" ,\tdestination=\"dest.example\"\t, key=\"ed25519:a_b1\" ,sig=\"" + goodSig + "\"",
		"unquoted with colon":      `X-Matrix origin=origin.example,destination=dest.example,key=ed25519:a_b1,sig="` + goodSig + `"`,
		"escaped characters":       `X-Matrix origin="origin\.example",destination="dest.example",key="ed25519:a_b1",sig="` + goodSig + `"`,
		"unknown parameters":       `X-Matrix origin="origin.example",destination="dest.example",foo="a, \"b\", c",key="ed25519:a_b1",sig="` + goodSig + `",bar=baz`,
		"empty list elements":      `X-Matrix origin="origin.example",,destination="dest.example",key="ed25519:a_b1",sig="` + goodSig + `",`,
		"padded base64 signature":  `X-Matrix origin="origin.example",destination="dest.example",key="ed25519:a_b1",sig="` + goodSig + `=="`,
		"comma inside quoted name": `X-Matrix origin="origin.example",destination="dest.example",key="ed25519:a_b1",note="x,y=z",sig="` + goodSig + `"`,
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			x, err := ParseXMatrix(h)
			if err != nil {
				t.Fatal(err)
			}
			x.Sig = strings.TrimRight(x.Sig, "=")
			if x != want {
				t.Fatalf("got %+v", x)
			}
		})
	}
	x, err := ParseXMatrix(`X-Matrix origin=o.example:8448,key="ed25519:1",sig="` + goodSig + `"`)
	if err != nil || x.Destination != "" || x.Origin != "o.example:8448" {
		t.Fatalf("no destination (pre-v1.3 sender): %+v %v", x, err)
	}
}

func TestParseXMatrixRejects(t *testing.T) {
	base := func(s string) string { return "X-Matrix " + s }
	ok := `origin="o.example",destination="d.example",key="ed25519:k",sig="` + goodSig + `"`
	cases := map[string]struct{ header, want string }{
		"other scheme":          {`Bearer abc`, "scheme is not X-Matrix"},
		"no space after scheme": {`X-Matrix,` + ok, "want a space"},
		"scheme only":           {`X-Matrix `, "no parameters"},
		"missing origin":        {base(`key="ed25519:k",sig="` + goodSig + `"`), `missing parameter "origin"`},
		"missing key":           {base(`origin="o.example",sig="` + goodSig + `"`), `missing parameter "key"`},
		"missing sig":           {base(`origin="o.example",key="ed25519:k"`), `missing parameter "sig"`},
		"signature not sig":     {base(`origin="o.example",key="ed25519:k",signature="` + goodSig + `"`), `missing parameter "sig"`},
		"duplicate origin":      {base(ok + `,origin="evil.example"`), `"origin" appears twice`},
		"duplicate ORIGIN case": {base(ok + `,ORIGIN="evil.example"`), `"origin" appears twice`},
		"duplicate sig":         {base(ok + `,sig="` + goodSig + `"`), `"sig" appears twice`},
		"empty origin":          {base(`origin="",key="ed25519:k",sig="` + goodSig + `"`), `"origin" is empty`},
		"unterminated quote":    {base(`key="ed25519:k",sig="` + goodSig + `",origin="o.example`), "unterminated quoted value"},
		"dangling backslash":    {base(`origin="o.example\`), "dangling backslash"},
		"no equals":             {base(`origin,key="ed25519:k",sig="` + goodSig + `"`), `has no '='`},
		"missing comma":         {base(`origin="o.example" key="ed25519:k",sig="` + goodSig + `"`), "want ','"},
		"semicolon separator":   {base(`origin="o.example";key="ed25519:k";sig="` + goodSig + `"`), "want ','"},
		"control character":     {base("origin=\"o.exa\x00mple\",key=\"ed25519:k\",sig=\"" + goodSig + "\""), "control character"},
		"newline injection":     {base("origin=\"o.example\"\r\nX-Evil: 1,key=\"ed25519:k\",sig=\"" + goodSig + "\""), "control character"},
		"bad key id":            {base(`origin="o.example",key="ed25519",sig="` + goodSig + `"`), "not <algorithm>:<version>"},
		"key id with slash":     {base(`origin="o.example",key="ed25519:a/b",sig="` + goodSig + `"`), "not <algorithm>:<version>"},
		"sig not base64":        {base(`origin="o.example",key="ed25519:k",sig="!!!"`), "not a base64 Ed25519 signature"},
		"sig too short":         {base(`origin="o.example",key="ed25519:k",sig="AAAA"`), "not a base64 Ed25519 signature"},
		"origin with slash":     {base(`origin="o.example/x",key="ed25519:k",sig="` + goodSig + `"`), "not allowed in a server name"},
		"origin with space":     {base(`origin="o example",key="ed25519:k",sig="` + goodSig + `"`), "not allowed in a server name"},
		"bad port":              {base(`origin="o.example:84x",key="ed25519:k",sig="` + goodSig + `"`), "bad port"},
		"unclosed ipv6":         {base(`origin="[::1",key="ed25519:k",sig="` + goodSig + `"`), "unclosed IPv6"},
		"unquoted bad value":    {base(`origin=o.example/evil,key="ed25519:k",sig="` + goodSig + `"`), "want ','"},
		"empty unquoted value":  {base(`origin=,key="ed25519:k",sig="` + goodSig + `"`), "empty or badly quoted value"},
		"huge header":           {base(strings.Repeat("a", 9000)), "bytes long"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseXMatrix(c.header)
			if err == nil {
				t.Fatalf("accepted %q", c.header)
			}
			if !errors.Is(err, ErrMalformedHeader) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestXMatrixRoundTrip(t *testing.T) {
	k := specKey(t)
	id := &Identity{ServerName: "hs.example", Keys: []Key{k}}
	cases := []struct {
		method, uri string
		body        []byte
	}{
		{"GET", "/_matrix/federation/v1/event/%24abc%2Fdef", nil},
		{"GET", "/_matrix/federation/v1/backfill/%21room%3Ahs.example?v=%24a&v=%24b&limit=100", nil},
		{"POST", "/_matrix/federation/v1/get_missing_events/%21room%3Ahs.example", []byte(`{"limit":10,"latest_events":["$x"]}`)},
		{"PUT", "/_matrix/federation/v2/send_join/%21r%3Ahs.example/%24e", []byte(`{"type":"m.room.member","content":{"membership":"join","displayname":"Zoë"}}`)},
	}
	for _, c := range cases {
		x, err := SignRequest(id, c.method, "hs.example", c.uri, c.body)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := ParseXMatrix(x.String())
		if err != nil || parsed != x {
			t.Fatalf("round trip of %q: %+v, %v", x.String(), parsed, err)
		}
		req := httptest.NewRequest(c.method, c.uri, strings.NewReader(string(c.body)))
		req.Header.Set("Authorization", x.String())
		origin, err := VerifyHTTPRequest(req, "hs.example", id.Lookup(), 1<<20)
		if err != nil || origin != "hs.example" {
			t.Fatalf("%s %s: %q %v", c.method, c.uri, origin, err)
		}
		if c.body != nil {
			buf := make([]byte, len(c.body))
			if n, _ := req.Body.Read(buf); n != len(c.body) {
				t.Fatal("body not restored for the handler")
			}
		}
	}
}

func TestVerifyRequestRejects(t *testing.T) {
	k := specKey(t)
	other := randomKey(t, "ed25519:1")
	id := &Identity{ServerName: "hs.example", Keys: []Key{k}}
	uri := "/_matrix/federation/v1/event/%24abc"
	x, _ := SignRequest(id, "GET", "hs.example", uri, nil)
	forged, _ := SignRequest(&Identity{ServerName: "hs.example", Keys: []Key{other}}, "GET", "hs.example", uri, nil)
	wrongKeyID := x
	wrongKeyID.Key = "ed25519:nope"
	remote := x
	remote.Origin = "evil.example"
	toOther, _ := SignRequest(id, "GET", "other.example", uri, nil)
	withBody, _ := SignRequest(id, "POST", "hs.example", uri, []byte(`{"a":1}`))
	oldOnly := &Identity{ServerName: "hs.example", Keys: []Key{randomKey(t, "ed25519:2")}, OldKeys: []OldKey{{ID: k.ID, Public: k.PublicKey(), ExpiredTS: 1}}}

	cases := map[string]struct {
		r    Request
		id   *Identity
		want error
	}{
		"no header":            {Request{Method: "GET", URI: uri}, id, ErrNoAuthorization},
		"bearer only":          {Request{Method: "GET", URI: uri, Authorization: []string{"Bearer x"}}, id, ErrNoAuthorization},
		"forged signature":     {Request{Method: "GET", URI: uri, Authorization: []string{forged.String()}}, id, ErrBadSignature},
		"other URI":            {Request{Method: "GET", URI: uri + "x", Authorization: []string{x.String()}}, id, ErrBadSignature},
		"re-encoded URI":       {Request{Method: "GET", URI: "/_matrix/federation/v1/event/$abc", Authorization: []string{x.String()}}, id, ErrBadSignature},
		"other method":         {Request{Method: "POST", URI: uri, Authorization: []string{x.String()}}, id, ErrBadSignature},
		"unknown key ID":       {Request{Method: "GET", URI: uri, Authorization: []string{wrongKeyID.String()}}, id, ErrUnknownKey},
		"foreign origin":       {Request{Method: "GET", URI: uri, Authorization: []string{remote.String()}}, id, ErrUnknownKey},
		"wrong destination":    {Request{Method: "GET", URI: uri, Authorization: []string{toOther.String()}}, id, ErrWrongDestination},
		"body swapped":         {Request{Method: "POST", URI: uri, Content: []byte(`{"a":2}`), Authorization: []string{withBody.String()}}, id, ErrBadSignature},
		"body dropped":         {Request{Method: "POST", URI: uri, Authorization: []string{withBody.String()}}, id, ErrBadSignature},
		"body not JSON":        {Request{Method: "POST", URI: uri, Content: []byte(`{"a":`), Authorization: []string{withBody.String()}}, id, ErrMalformedContent},
		"old key for requests": {Request{Method: "GET", URI: uri, Authorization: []string{x.String()}}, oldOnly, ErrUnknownKey},
		"conflicting origins":  {Request{Method: "GET", URI: uri, Authorization: []string{x.String(), remote.String()}}, id, ErrMalformedHeader},
		"one good, one forged": {Request{Method: "GET", URI: uri, Authorization: []string{x.String(), forged.String()}}, id, ErrBadSignature},
		"malformed second":     {Request{Method: "GET", URI: uri, Authorization: []string{x.String(), "X-Matrix origin="}}, id, ErrMalformedHeader},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			origin, err := VerifyRequest(c.r, "hs.example", c.id.Lookup())
			if !errors.Is(err, c.want) {
				t.Fatalf("origin %q, err %v, want %v", origin, err, c.want)
			}
		})
	}
	// A header without destination (pre-v1.3 sender) still verifies: the signed JSON names us.
	noDest := x
	noDest.Destination = ""
	if _, err := VerifyRequest(Request{Method: "GET", URI: uri, Authorization: []string{noDest.String()}}, "hs.example", id.Lookup()); err != nil {
		t.Fatalf("header without destination: %v", err)
	}
}

func FuzzParseXMatrix(f *testing.F) {
	f.Add(`X-Matrix origin="origin.example",destination="dest.example",key="ed25519:a_b1",sig="` + goodSig + `"`)
	f.Add(`X-Matrix origin=o.example:8448,key=ed25519:1,sig=` + goodSig)
	f.Add(`X-Matrix origin="a\"b",key="ed25519:1",sig="x",,`)
	f.Add("x-matrix \t origin=\"[::1]:8448\" , key=\"ed25519:k\",sig=\"" + goodSig + "\"")
	f.Fuzz(func(t *testing.T, h string) {
		x, err := ParseXMatrix(h)
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("error not wrapped: %v", err)
			}
			return
		}
		if x.Origin == "" || x.Key == "" || x.Sig == "" {
			t.Fatalf("accepted with empty fields: %+v", x)
		}
		// What we accept we must be able to write back and read to the same value.
		if strings.ContainsAny(x.Origin+x.Destination+string(x.Key)+x.Sig, `"\`) {
			return
		}
		again, err := ParseXMatrix(x.String())
		if err != nil || again != x {
			t.Fatalf("re-parse of %q: %+v, %v", x.String(), again, err)
		}
	})
}
