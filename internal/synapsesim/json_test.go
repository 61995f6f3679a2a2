package synapsesim

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestWriteValueNested: nested objects and lists of them are written in order, as encoding/json
// writes the same values (a nil obj is {}, a nil []obj null, raw JSON compacted, no HTML escapes).
func TestWriteValueNested(t *testing.T) {
	v := obj{{"b", obj{{"z", 1}, {"a", []obj{{{"x", "<&>"}}, nil}}}}, {"n", []obj(nil)},
		{"raw", json.RawMessage(`{ "k" : [1, 2] }`)}, {"m", map[string]any{"o": obj{{"q", true}}}}, {"s", nil}}
	want := `{"b":{"z":1,"a":[{"x":"<&>"},{}]},"n":null,"raw":{"k":[1,2]},"m":{"o":{"q":true}},"s":null}`
	var buf bytes.Buffer
	if err := writeValue(&buf, v); err != nil {
		t.Fatal(err)
	}
	if buf.String() != want {
		t.Fatalf("got  %s\nwant %s", buf.String(), want)
	}
	var via bytes.Buffer
	enc := json.NewEncoder(&via)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"v": v}); err != nil || via.String() != `{"v":`+want+"}\n" {
		t.Fatalf("through encoding/json: %s, %v", via.String(), err)
	}
}
