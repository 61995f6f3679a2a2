package exportfmt

import (
	"errors"
	"strings"
	"testing"
)

func TestEncodeKnownIDs(t *testing.T) {
	cases := map[string]string{
		"@alice:synapse.test":        "%40alice%3asynapse.test",
		"!AbCd:synapse.test":         "%21%41b%43d%3asynapse.test",
		"@..:x":                      "%40.%2e%3ax",
		"..":                         "%2e.",
		".":                          "%2e",
		"a/b":                        "a%2fb",
		"a\\b":                       "a%5cb",
		"ü":                          "%c3%bc",
		"a..b":                       "a.%2eb",
		"@foo.bar:ex.org":            "%40foo.bar%3aex.org",
		"~":                          "%7e",
		"%":                          "%25",
		"@helper-bot_1:synapse.test": "%40helper-bot_1%3asynapse.test",
	}
	for id, want := range cases {
		if got := Encode(id); got != want {
			t.Errorf("Encode(%q) = %q, want %q", id, got, want)
		}
		back, err := Decode(want)
		if err != nil || back != id {
			t.Errorf("Decode(%q) = %q, %v; want %q", want, back, err, id)
		}
	}
}

func TestEncodeLongIDIsHashed(t *testing.T) {
	id := "@" + strings.Repeat("ü", 127) + "x:synapse.test" // a 255-byte localpart
	stem := Encode(id)
	if len(stem) > MaxStem {
		t.Fatalf("stem of %d bytes", len(stem))
	}
	if !strings.Contains(stem, "~") {
		t.Fatalf("long ID not hashed: %q", stem)
	}
	if _, err := Decode(stem); !errors.Is(err, ErrHashedName) {
		t.Fatalf("Decode(hashed) = %v, want ErrHashedName", err)
	}
	if !IsStemOf(stem, id) || IsStemOf(stem, id+"y") {
		t.Fatal("IsStemOf does not tell the ID from another")
	}
	// Two long IDs that share the first MaxStem bytes of encoding still differ.
	other := id[:len(id)-1] + "u"
	if Encode(other) == stem {
		t.Fatal("two long IDs share a stem")
	}
	if s := Encode(""); s == "" || !strings.HasPrefix(s, "~") {
		t.Fatalf("Encode(\"\") = %q", s)
	}
}

func TestDecodeRejectsNonCanonical(t *testing.T) {
	for _, stem := range []string{"", "A", "%41x%4A", "%61", ".x", "a..b", "a/b", "%2", "%zz", "a~12", "..", "x~" + strings.Repeat("g", 64)} {
		if id, err := Decode(stem); err == nil {
			t.Errorf("Decode(%q) = %q, want an error", stem, id)
		}
	}
}

// checkStem asserts the safety properties of a stem.
func checkStem(t *testing.T, id, stem string) {
	t.Helper()
	if stem == "" || len(stem) > MaxStem {
		t.Fatalf("Encode(%q) = %q: length %d", id, stem, len(stem))
	}
	if strings.ContainsAny(stem, "/\\\x00") || strings.Contains(stem, "..") || stem[0] == '.' {
		t.Fatalf("Encode(%q) = %q: unsafe", id, stem)
	}
	if strings.ToLower(stem) != stem {
		t.Fatalf("Encode(%q) = %q: upper case", id, stem)
	}
	for _, suffix := range []string{".json", ".json.age"} {
		if len(stem+suffix) > 255 {
			t.Fatalf("Encode(%q)+%s longer than 255 bytes", id, suffix)
		}
	}
}

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"@alice:synapse.test", "..", "a/../b", "\\", "ü", "", strings.Repeat("%", 300), "@" + strings.Repeat("a", 255) + ":x", "A.B..C"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		stem := Encode(id)
		checkStem(t, id, stem)
		back, err := Decode(stem)
		switch {
		case errors.Is(err, ErrHashedName):
			if !IsStemOf(stem, id) {
				t.Fatalf("hashed stem %q does not resolve to %q", stem, id)
			}
		case err != nil:
			t.Fatalf("Decode(Encode(%q)) = %v", id, err)
		case back != id:
			t.Fatalf("Decode(Encode(%q)) = %q", id, back)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"%40alice%3asynapse.test", "..", "%2e", "a~" + strings.Repeat("0", 64), "A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stem string) {
		id, err := Decode(stem)
		if err != nil {
			return
		}
		if Encode(id) != stem {
			t.Fatalf("Decode(%q) = %q but Encode gives %q: two stems for one ID", stem, id, Encode(id))
		}
	})
}
