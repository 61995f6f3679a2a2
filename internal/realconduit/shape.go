package realconduit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	_ "modernc.org/sqlite" // Conduit's SQLite database, read-only
)

// DBShape is a Conduit database's trees and, for each, the shapes of its keys (sorted, unique):
// what a fresh database holds, without the random parts.
type DBShape map[string][]string

// ReadDBShape reads every table of <dir>/conduit.db read-only and the shapes of its keys;
// serverName is replaced by "<server>".
func ReadDBShape(dir, serverName string) (DBShape, error) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "conduit.db")+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ctx := context.Background()
	rows, err := db.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table'")
	if err != nil {
		return nil, fmt.Errorf("listing the tables of %s: %w", dir, err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, err
		}
		tables = append(tables, name)
	}
	rows.Close()
	shape := DBShape{}
	for _, table := range tables {
		keys, err := db.QueryContext(ctx, `SELECT key FROM "`+table+`"`)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", table, err)
		}
		seen := map[string]bool{}
		for keys.Next() {
			var k []byte
			if err := keys.Scan(&k); err != nil {
				keys.Close()
				return nil, err
			}
			seen[KeyShape(k, serverName)] = true
		}
		keys.Close()
		list := make([]string, 0, len(seen))
		for s := range seen {
			list = append(list, s)
		}
		sort.Strings(list)
		shape[table] = list
	}
	return shape, nil
}

var literalSegment = regexp.MustCompile(`^[a-z][a-z0-9._]*$`)

// KeyShape is a key with its random parts named: segments between 0xFF bytes become "@user",
// "!room", "$event", "#alias", "u64" (8 binary bytes), "text" or "bin<n>"; short lower-case words
// (tree keys such as "keypair", event types) stay as they are.
func KeyShape(key []byte, serverName string) string {
	segs := bytes.Split(key, []byte{0xff})
	out := make([]string, len(segs))
	for i, seg := range segs {
		s := strings.ReplaceAll(string(seg), serverName, "<server>")
		switch {
		case len(seg) == 0:
			out[i] = ""
		case !isPrintable(seg):
			if len(seg) == 8 {
				out[i] = "u64"
			} else {
				out[i] = fmt.Sprintf("bin%d", len(seg))
			}
		case strings.HasPrefix(s, "@"):
			out[i] = "@user"
			if strings.HasPrefix(s, "@conduit:") {
				out[i] = "@conduit"
			}
		case strings.HasPrefix(s, "!"):
			out[i] = "!room"
		case strings.HasPrefix(s, "$"):
			out[i] = "$event"
		case strings.HasPrefix(s, "#"):
			out[i] = "#alias"
		case s == "<server>":
			out[i] = s
		case literalSegment.MatchString(s) && len(s) <= 40:
			out[i] = s
		default:
			out[i] = "text"
		}
	}
	return strings.Join(out, "|")
}

func isPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// Schema is a JSON value's shape: objects keep their keys (with the shapes of their values),
// arrays become one element that merges every element's shape, scalars their type name.
// Under "content", "unsigned", "joined" (keyed by user) and "unstable_features" only the
// object's presence is kept: their keys are data, not shape.
func Schema(b []byte) (any, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return schemaOf(v, ""), nil
}

func schemaOf(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		if key == "content" || key == "unsigned" || key == "joined" || key == "unstable_features" {
			return "object"
		}
		out := map[string]any{}
		for k, e := range x {
			out[k] = schemaOf(e, k)
		}
		return out
	case []any:
		var merged any
		for _, e := range x {
			merged = mergeSchema(merged, schemaOf(e, key))
		}
		if merged == nil {
			return []any{}
		}
		return []any{merged}
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return "?"
}

func mergeSchema(a, b any) any {
	if a == nil {
		return b
	}
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		return a
	}
	out := map[string]any{}
	for k, v := range am {
		out[k] = v
	}
	for k, v := range bm {
		out[k] = mergeSchema(out[k], v)
	}
	return out
}

// SchemaDiff lists where got's Schema differs from want's, each naming the JSON path.
func SchemaDiff(got, want any, path string) []string {
	if path == "" {
		path = "."
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v, real Conduit has an object", path, got)}
		}
		var out []string
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s%s: missing (real Conduit has %v)", path, k, brief(wv)))
				continue
			}
			out = append(out, SchemaDiff(gv, wv, path+k+".")...)
		}
		for k, gv := range g {
			if _, ok := w[k]; !ok {
				out = append(out, fmt.Sprintf("%s%s: %v, real Conduit has no such key", path, k, brief(gv)))
			}
		}
		sort.Strings(out)
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v, real Conduit has an array", path, brief(got))}
		}
		if len(w) == 0 || len(g) == 0 {
			return nil // an empty array says nothing about its elements
		}
		return SchemaDiff(g[0], w[0], path+"[].")
	default:
		if !reflect.DeepEqual(got, want) {
			return []string{fmt.Sprintf("%s: %v, real Conduit has %v", strings.TrimSuffix(path, "."), brief(got), want)}
		}
	}
	return nil
}

func brief(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// ShapeDiff lists the tables and key shapes in which got differs from want.
func ShapeDiff(got, want DBShape) []string {
	var out []string
	for table, wk := range want {
		gk, ok := got[table]
		if !ok {
			out = append(out, fmt.Sprintf("table %s: missing (real Conduit's first start makes it)", table))
			continue
		}
		if !reflect.DeepEqual(nonNil(gk), nonNil(wk)) {
			out = append(out, fmt.Sprintf("table %s: keys %v, real Conduit's first start writes %v", table, gk, wk))
		}
	}
	for table := range got {
		if _, ok := want[table]; !ok {
			out = append(out, fmt.Sprintf("table %s: real Conduit's first start has no such table", table))
		}
	}
	sort.Strings(out)
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
