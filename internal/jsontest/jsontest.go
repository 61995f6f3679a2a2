// Package jsontest holds the JSON helpers tests share: canonical forms to compare documents
// whatever their key order, and marshalling that fails the test instead of returning an error.
package jsontest

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/transition-matrix/transition-matrix/signing"
)

// Canonical returns b in canonical JSON, failing the test when b is not JSON.
func Canonical(t testing.TB, b []byte) string {
	t.Helper()
	c, err := signing.CanonicalJSON(b)
	if err != nil {
		t.Fatalf("not JSON: %v: %.200s", err, b)
	}
	return string(c)
}

// Marshal encodes v, failing the test when it cannot.
func Marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Sorted returns a sorted copy of s.
func Sorted(s []string) []string {
	out := append([]string{}, s...)
	slices.Sort(out)
	return out
}

// Body is a request body for the test clients: nil for none, a []byte as it is, anything else
// encoded as JSON.
func Body(body any) ([]byte, error) {
	switch b := body.(type) {
	case nil:
		return nil, nil
	case []byte:
		return b, nil
	default:
		return json.Marshal(b)
	}
}
