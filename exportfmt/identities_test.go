package exportfmt

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
)

func TestReadIdentities(t *testing.T) {
	dir := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "key.txt")
	if err := os.WriteFile(good, []byte("# created by age-keygen\n"+id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := ReadIdentities(good)
	if err != nil || len(ids) != 1 {
		t.Fatalf("ReadIdentities(good) = %d identities, %v", len(ids), err)
	}
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, []byte("# nothing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIdentities(empty); err == nil {
		t.Fatal("a file without identities was accepted")
	}
	if _, err := ReadIdentities(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v, want os.ErrNotExist", err)
	}
}
