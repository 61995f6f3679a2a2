package signing

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// streamCases are inputs whose streamed canonical form must equal CanonicalJSON's.
var streamCases = []string{
	`{}`, `[]`, `"x"`, `0`, `-0`, `-0.0`, `1E2`, `true`, `null`,
	` { "b" : 2 , "a" : 1 } `,
	`{"a":1,"a":2}`, `{"b":1,"a":2,"b":3}`, `{"a":{"d":1,"c":[{"f":1,"e":2}]},"0":[]}`,
	`{"本":2,"日":1}`, `{"\u0062":1,"a":2}`, `{"\"":1,"!":2,"#":3}`,
	`{"a":"\u0000\u001f\u007f\b\f\n\r\t\"\\\/","b":"\ud83d\ude00","c":"\ud800"}`,
	`[0.25,1.0,1.5e-5,1e16,123456789.125,-0.0,0.0001,1E2,2.5e+20,123456789012345678901234567890]`,
}

func TestStreamedCanonicalEqualsTreeCanonical(t *testing.T) {
	for _, in := range append(streamCases, `{"x":`+strings.Repeat(`{"b":0,"a":`, 40)+`1`+strings.Repeat(`}`, 41)) {
		want, err := CanonicalJSON([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var buf bytes.Buffer
		if err := appendCanonical(&buf, []byte(in)); err != nil || buf.String() != string(want) {
			t.Errorf("streamed %s\n got %s (%v)\nwant %s", in, buf.String(), err, want)
		}
	}
}

func TestStreamedCanonicalRejects(t *testing.T) {
	deep := strings.Repeat("[", MaxCanonicalDepth+1) + strings.Repeat("]", MaxCanonicalDepth+1)
	for _, in := range []string{``, ` `, `{`, `[`, `"`, `"\`, `{"a"}`, `{"a":1,}`, `{"a":1}x`, `{"a":1} {}`, "{\"a\":\"\xff\"}",
		`{"a":1e999}`, `{a:1}`, `[1,]`, `[01]`, `[1.]`, `[.5]`, `[1e]`, `[-]`, `[+1]`, `[tru]`, "[\"a\nb\"]", `["\x"]`, deep} {
		var buf bytes.Buffer
		if err := appendCanonical(&buf, []byte(in)); err == nil || !strings.HasPrefix(err.Error(), "canonical json") {
			t.Errorf("appendCanonical(%.40q) err = %v, want a canonical json error", in, err)
		}
	}
	ok := strings.Repeat("[", MaxCanonicalDepth) + strings.Repeat("]", MaxCanonicalDepth)
	if err := appendCanonical(&bytes.Buffer{}, []byte(ok)); err != nil {
		t.Fatalf("%d levels: %v", MaxCanonicalDepth, err)
	}
}

// TestStreamedCanonicalAllocatesLittle holds the allocation of canonicalising a 1 MiB array of
// zeros (the body of the attack) into a buffer of its size under 3 MiB; a decoded tree
// of it takes over 20 MiB.
func TestStreamedCanonicalAllocatesLittle(t *testing.T) {
	in := []byte("{\"a\":[" + strings.Repeat("0,", 1<<19) + "0]}")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var buf bytes.Buffer
	buf.Grow(len(in))
	if err := appendCanonical(&buf, in); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 3<<20 {
		t.Fatalf("canonicalising %d bytes allocated %d bytes", len(in), got)
	}
}

// FuzzStreamedCanonical checks the streamed canonical form against the tree one on any input:
// both refuse it, or both give the same bytes (inputs nested deeper than MaxCanonicalDepth may
// be refused by the streamed form alone).
func FuzzStreamedCanonical(f *testing.F) {
	for _, c := range streamCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, in string) {
		want, treeErr := CanonicalJSON([]byte(in))
		var buf bytes.Buffer
		err := appendCanonical(&buf, []byte(in))
		switch {
		case treeErr != nil && err == nil:
			t.Fatalf("%q: the tree refuses it (%v), the stream gives %q", in, treeErr, buf.String())
		case treeErr == nil && err != nil:
			if strings.Contains(err.Error(), "nested deeper") {
				return
			}
			t.Fatalf("%q: the stream refuses it (%v), the tree gives %q", in, err, want)
		case err == nil && buf.String() != string(want):
			t.Fatalf("%q: stream %q, tree %q", in, buf.String(), want)
		}
	})
}

func TestCheckRequestHeadersNeedsNoBody(t *testing.T) {
	k := specKey(t)
	id := &Identity{ServerName: "hs.example", Keys: []Key{k}}
	uri := "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example"
	body := []byte(`{"latest_events":["$a"]}`)
	x, _ := SignRequest(id, "POST", "hs.example", uri, body)
	remote := x
	remote.Origin = "evil.example"
	unknownKey := x
	unknownKey.Key = "ed25519:nope"
	for name, c := range map[string]struct {
		headers []string
		want    error
	}{
		"made-up origin": {[]string{remote.String()}, ErrUnknownKey},
		"unknown key":    {[]string{unknownKey.String()}, ErrUnknownKey},
		"none":           {nil, ErrNoAuthorization},
		"garbage":        {[]string{"X-Matrix nope"}, ErrMalformedHeader},
	} {
		if _, err := CheckRequestHeaders(c.headers, "hs.example", id.Lookup()); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	a, err := CheckRequestHeaders([]string{x.String()}, "hs.example", id.Lookup())
	if err != nil || a.Origin() != "hs.example" {
		t.Fatalf("good header: %v", err)
	}
	if _, err := a.Verify("POST", uri, []byte(`{"latest_events":["$b"]}`)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other body: %v", err)
	}
	if _, err := a.Verify("POST", uri, []byte(`[0,0,0]`)); !errors.Is(err, ErrMalformedContent) {
		t.Fatalf("an array body: %v", err)
	}
	if origin, err := a.Verify("POST", uri, body); err != nil || origin != "hs.example" {
		t.Fatalf("signed body: %q %v", origin, err)
	}
}
