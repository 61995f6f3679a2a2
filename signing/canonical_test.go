package signing

import (
	"strings"
	"testing"
)

func TestCanonicalJSON(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{}`, `{}`},
		{` { "b" : 2 , "a" : 1 } `, `{"a":1,"b":2}`},
		{`{"one":1,"two":"Two"}`, `{"one":1,"two":"Two"}`},
		// The spec's canonical JSON examples.
		{`{"b":"2","a":"1"}`, `{"a":"1","b":"2"}`},
		{`{"auth":{"success":true,"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"medium":"email","address":"john.doe@example.org"},{"medium":"msisdn","address":"123456789"}]}}}`,
			`{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}`},
		{`{"a":"日本語"}`, `{"a":"日本語"}`},
		{`{"本":2,"日":1}`, `{"日":1,"本":2}`},
		{`{"a":"\u65E5"}`, `{"a":"日"}`},
		{`{"a":null}`, `{"a":null}`},
		{`{"a":-0}`, `{"a":0}`},
		{`{"a":"\u0000\u001f\u007f"}`, `{"a":"\u0000\u001f` + "\x7f" + `"}`},
		{`{"a":"\b\f\n\r\t\"\\\/"}`, `{"a":"\b\f\n\r\t\"\\/"}`},
		{`{"a":"<>&\u2028\u2029"}`, "{\"a\":\"<>&\u2028\u2029\"}"},
		{`{"a":"😀","b":"\ud83d\ude00"}`, `{"a":"😀","b":"😀"}`},
		{`{"a":1,"a":2}`, `{"a":2}`},
		{`[1,[2,{"y":1,"x":[]}]]`, `[1,[2,{"x":[],"y":1}]]`},
		{`{"big":123456789012345678901234567890}`, `{"big":123456789012345678901234567890}`},
		// Floats as Python's repr prints them.
		{`[0.25,1.0,1.5e-5,1e16,123456789.125,-0.0,0.0001,1E2,2.5e+20]`, `[0.25,1.0,1.5e-05,1e+16,123456789.125,-0.0,0.0001,100.0,2.5e+20]`},
		{`[true,false]`, `[true,false]`},
		{`"x"`, `"x"`},
	}
	for _, c := range cases {
		got, err := CanonicalJSON([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("CanonicalJSON(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}

func TestCanonicalJSONRejects(t *testing.T) {
	for _, in := range []string{``, `{`, `{"a":1}x`, `{"a":1} {}`, "{\"a\":\"\xff\"}", `{"a":1e999}`, `{a:1}`, `[1,]`} {
		if _, err := CanonicalJSON([]byte(in)); err == nil || !strings.HasPrefix(err.Error(), "canonical json") {
			t.Errorf("CanonicalJSON(%q) err = %v, want a canonical json error", in, err)
		}
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	f.Add(`{"b":[1,2.5,"x\u0001"],"a":{"c":null}}`)
	f.Fuzz(func(t *testing.T, in string) {
		out, err := CanonicalJSON([]byte(in))
		if err != nil {
			return
		}
		again, err := CanonicalJSON(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", in, out, again, err)
		}
	})
}
