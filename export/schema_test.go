package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
)

// schemaChecker validates JSON against the subset of JSON Schema 2020-12 that docs/schema uses:
// type, properties, required, additionalProperties, items, enum, const, pattern, minLength,
// oneOf and local $ref. Any other keyword is an error, so the schemas cannot outgrow it silently.
type schemaChecker struct {
	root map[string]any
}

var annotations = map[string]bool{"$schema": true, "$id": true, "title": true, "description": true, "$defs": true}

func loadSchema(t *testing.T, name string) *schemaChecker {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "docs", "schema", name))
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &schemaChecker{root: root}
}

// check returns every violation of doc, each with its JSON path.
func (c *schemaChecker) check(doc []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{err.Error()}
	}
	var errs []string
	c.validate(c.root, v, "$", &errs)
	return errs
}

func typeOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}

func (c *schemaChecker) validate(s map[string]any, v any, at string, errs *[]string) {
	fail := func(format string, args ...any) { *errs = append(*errs, at+": "+fmt.Sprintf(format, args...)) }
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rule := s[k]
		switch k {
		case "$ref":
			ref := rule.(string)
			name, ok := strings.CutPrefix(ref, "#/$defs/")
			def, found := c.root["$defs"].(map[string]any)[name].(map[string]any)
			if !ok || !found {
				fail("unresolvable $ref %s", ref)
				continue
			}
			c.validate(def, v, at, errs)
		case "type":
			got := typeOf(v)
			var allowed []string
			switch r := rule.(type) {
			case string:
				allowed = []string{r}
			case []any:
				for _, x := range r {
					allowed = append(allowed, x.(string))
				}
			}
			ok := false
			for _, a := range allowed {
				ok = ok || a == got || (a == "number" && got == "integer")
			}
			if !ok {
				fail("is %s, want %v", got, allowed)
			}
		case "properties":
			obj, isObj := v.(map[string]any)
			if !isObj {
				continue
			}
			for name, sub := range rule.(map[string]any) {
				if pv, ok := obj[name]; ok {
					c.validate(sub.(map[string]any), pv, at+"."+name, errs)
				}
			}
		case "required":
			obj, isObj := v.(map[string]any)
			if !isObj {
				continue
			}
			for _, name := range rule.([]any) {
				if _, ok := obj[name.(string)]; !ok {
					fail("lacks required %q", name)
				}
			}
		case "additionalProperties":
			obj, isObj := v.(map[string]any)
			if !isObj {
				continue
			}
			props, _ := s["properties"].(map[string]any)
			for name, pv := range obj {
				if _, declared := props[name]; declared {
					continue
				}
				switch r := rule.(type) {
				case bool:
					if !r {
						fail("has unexpected %q", name)
					}
				case map[string]any:
					c.validate(r, pv, at+"."+name, errs)
				}
			}
		case "items":
			if arr, ok := v.([]any); ok {
				for i, x := range arr {
					c.validate(rule.(map[string]any), x, fmt.Sprintf("%s[%d]", at, i), errs)
				}
			}
		case "enum":
			found := false
			for _, x := range rule.([]any) {
				found = found || reflect.DeepEqual(x, normalize(v))
			}
			if !found {
				fail("%v is not one of %v", v, rule)
			}
		case "const":
			if !reflect.DeepEqual(normalize(rule), normalize(v)) {
				fail("%v is not %v", v, rule)
			}
		case "pattern":
			if str, ok := v.(string); ok && !regexp.MustCompile(rule.(string)).MatchString(str) {
				fail("%q does not match %s", str, rule)
			}
		case "minLength":
			if str, ok := v.(string); ok && float64(len([]rune(str))) < rule.(float64) {
				fail("%q is shorter than %v", str, rule)
			}
		case "oneOf":
			n := 0
			for _, sub := range rule.([]any) {
				var sink []string
				c.validate(sub.(map[string]any), v, at, &sink)
				if len(sink) == 0 {
					n++
				}
			}
			if n != 1 {
				fail("matches %d of the oneOf schemas, want 1", n)
			}
		default:
			if !annotations[k] {
				fail("schema keyword %q is not supported by the test's checker", k)
			}
		}
	}
}

// normalize makes JSON numbers comparable with the schema's float64s.
func normalize(v any) any {
	if n, ok := v.(json.Number); ok {
		f, _ := n.Float64()
		return f
	}
	return v
}

// TestExportMatchesSchemas validates every file of exports (ordinary, hostile IDs, one that
// stopped on errors) against docs/schema, and checks the checker rejects broken files.
func TestExportMatchesSchemas(t *testing.T) {
	schemas := map[string]*schemaChecker{
		"user": loadSchema(t, "user.schema.json"), "room": loadSchema(t, "room.schema.json"),
		"manifest": loadSchema(t, "manifest.schema.json"),
	}
	validateDir := func(dir string) int {
		n := 0
		for p, data := range readDir(t, dir) {
			kind := "manifest"
			if strings.HasPrefix(p, "users/") {
				kind = "user"
			} else if strings.HasPrefix(p, "rooms/") {
				kind = "room"
			}
			for _, e := range schemas[kind].check(data) {
				t.Errorf("%s: %s", p, e)
			}
			n++
		}
		return n
	}
	for _, opts := range []struct {
		name   string
		faulty bool
	}{{"small", false}, {"hostile", false}, {"v12", false}, {"failed", true}} {
		wopts := smallWorld
		switch opts.name {
		case "hostile":
			wopts = hostileWorld
		case "v12":
			wopts = v12World
		}
		sim := synapsesim.Start(t, synapsesim.Options{World: testWorld(t, wopts)})
		dir := filepath.Join(t.TempDir(), "out")
		cfg := exportConfig(sim, dir)
		if opts.faulty {
			sim.Faults().FailNext("admin.accountdata", 1000, 500)
			cfg.Synapse.MaxAttempts, cfg.ItemAttempts, cfg.MaxFailures = 1, 1, 2
			if _, err := Run(t.Context(), cfg); err == nil {
				t.Fatal("export with failing account data succeeded")
			}
		} else {
			runExport(t, cfg)
		}
		min := 2
		if opts.faulty {
			min = 1 // the manifest, with its failed list
			if !strings.Contains(string(readDir(t, dir)[exportfmt.ManifestName]), `"reason"`) {
				t.Error("the stopped export's manifest lists no failure")
			}
		}
		if n := validateDir(dir); n < min {
			t.Errorf("%s: only %d files validated", opts.name, n)
		}
	}

	broken := map[string]string{
		"user":     `{"uid":"alice","admin":1}`,
		"room":     `{"room_id":"!r:x","room_version":"10","state_format":"maybe","state":[],"auth_chain":[{}],"forward_extremities":[],"local_members":{"@a:x":"joined"},"remote_members":{},"joined_local_members":0,"aliases":[],"canonical_alias":null,"published":false,"federated_with":[],"extra":1}`,
		"manifest": `{"format":"other","format_version":2}`,
	}
	for kind, doc := range broken {
		errs := schemas[kind].check([]byte(doc))
		if len(errs) < 3 {
			t.Errorf("the %s schema accepts a broken file: %v", kind, errs)
		}
	}
}

// TestEncryptTo exports with -encrypt-to: every user and room file is a .json.age file that
// decrypts to exactly what a plain export writes, the manifest names the recipient and hashes the
// encrypted bytes, a rerun resumes, and a rerun asking for another recipient is refused.
func TestEncryptTo(t *testing.T) {
	w := testWorld(t, smallWorld)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	plain := filepath.Join(t.TempDir(), "plain")
	runExport(t, exportConfig(sim, plain))
	want := readDir(t, plain)

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "enc")
	cfg := exportConfig(sim, dir)
	cfg.EncryptTo = id.Recipient().String()
	runExport(t, cfg)
	got := readDir(t, dir)
	if len(got) != len(want) {
		t.Fatalf("%d files, want %d", len(got), len(want))
	}
	fsys, closer, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	for p := range want {
		if p == exportfmt.ManifestName {
			continue
		}
		if _, ok := got[p]; ok {
			t.Errorf("%s written in plain text", p)
		}
		data, err := readExported(fsys, p+".age", id)
		if err != nil {
			t.Errorf("%s.age: %v", p, err)
			continue
		}
		if !bytes.Equal(data, want[p]) {
			t.Errorf("%s.age does not decrypt to the plain export's file", p)
		}
	}
	var m exportfmt.Manifest
	if err := json.Unmarshal(got[exportfmt.ManifestName], &m); err != nil {
		t.Fatal(err)
	}
	if m.EncryptedTo == nil || *m.EncryptedTo != cfg.EncryptTo {
		t.Errorf("manifest encrypted_to = %v", m.EncryptedTo)
	}
	for p, ent := range m.Files {
		if !strings.HasSuffix(p, ".json.age") || exportfmt.SHA256Hex(got[p]) != ent.SHA256 {
			t.Errorf("manifest entry %s does not hash the encrypted file", p)
		}
	}
	s := runExport(t, cfg)
	if s.Resumed != len(w.Users)+len(w.Rooms) {
		t.Errorf("encrypted rerun kept %d items, want all %d", s.Resumed, len(w.Users)+len(w.Rooms))
	}
	cfg.EncryptTo = ""
	if _, err := Run(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "encrypt") {
		t.Errorf("plain rerun into an encrypted export: %v", err)
	}
	cfg.EncryptTo = "age1notarecipient"
	if _, err := Run(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "not an age recipient") {
		t.Errorf("bad recipient: %v", err)
	}
}
