// Package recorded reads, for tests, the JSON files recorded from a real Synapse into the calling
// package's testdata directory.
package recorded

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Dir is where, relative to a package's directory, its recordings from Synapse 1.163.2 are kept.
var Dir = filepath.Join("testdata", "synapse-1.163.2")

// JSON decodes the recording name from Dir into out, failing the test when it cannot.
func JSON(t testing.TB, name string, out any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
