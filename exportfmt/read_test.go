package exportfmt

import (
	"bytes"
	"errors"
	"testing"
	"testing/fstest"

	"filippo.io/age"
)

func TestParseManifest(t *testing.T) {
	for _, c := range []struct {
		name, data string
		want       error
	}{
		{"not json", `{"format":`, ErrNotManifest},
		{"other format", `{"format":"other","format_version":1}`, ErrOtherFormat},
		{"other version", `{"format":"transition-matrix-export","format_version":2}`, ErrOtherFormat},
	} {
		if _, err := ParseManifest([]byte(c.data)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	m, err := ParseManifest([]byte(`{"format":"transition-matrix-export","format_version":1,"server_name":"s.test"}`))
	if err != nil || m.ServerName != "s.test" || m.Files == nil {
		t.Fatalf("valid manifest: %+v, %v", m, err)
	}
}

func TestCheckPath(t *testing.T) {
	uid := "@alice:s.test"
	ent := FileEntry{Kind: KindUser, ID: uid, SHA256: SHA256Hex(nil)}
	if err := CheckPath(FilePath(KindUser, uid, false), ent, false); err != nil {
		t.Fatalf("own path refused: %v", err)
	}
	if err := CheckPath(FilePath(KindUser, uid, true), ent, true); err != nil {
		t.Fatalf("own encrypted path refused: %v", err)
	}
	for name, c := range map[string]struct {
		p   string
		ent FileEntry
		enc bool
	}{
		"unknown kind":       {FilePath(KindUser, uid, false), FileEntry{Kind: "x", ID: uid, SHA256: ent.SHA256}, false},
		"wrong folder":       {FilePath(KindRoom, uid, false), ent, false},
		"other ID":           {FilePath(KindUser, "@bob:s.test", false), ent, false},
		"plain in encrypted": {FilePath(KindUser, uid, false), ent, true},
		"bad sha256":         {FilePath(KindUser, uid, false), FileEntry{Kind: KindUser, ID: uid, SHA256: "ab"}, false},
	} {
		if err := CheckPath(c.p, c.ent, c.enc); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%s: %v, want ErrBadEntry", name, err)
		}
	}
}

func TestReadEntry(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`{"uid":"@alice:s.test"}` + "\n")
	var sealed bytes.Buffer
	w, err := age.Encrypt(&sealed, id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	w.Close()
	fsys := fstest.MapFS{
		"users/a.json":     {Data: plain},
		"users/a.json.age": {Data: sealed.Bytes()},
	}
	entry := func(data []byte) FileEntry {
		return FileEntry{Kind: KindUser, ID: "@alice:s.test", SHA256: SHA256Hex(data), Size: int64(len(data))}
	}
	if got, err := ReadEntry(fsys, "users/a.json", entry(plain)); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("plain file: %q, %v", got, err)
	}
	if got, err := ReadEntry(fsys, "users/a.json.age", entry(sealed.Bytes()), id); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("encrypted file: %q, %v", got, err)
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := ReadEntry(fsys, "users/a.json.age", entry(sealed.Bytes()), other); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong identity: %v, want ErrDecrypt", err)
	}
	if _, err := ReadEntry(fsys, "users/b.json", entry(plain)); !errors.Is(err, ErrMissing) {
		t.Errorf("missing file: %v, want ErrMissing", err)
	}
	changed := append([]byte(nil), plain...)
	changed[3] ^= 1
	if _, err := ReadEntry(fsys, "users/a.json", entry(changed)); !errors.Is(err, ErrChanged) {
		t.Errorf("changed content: %v, want ErrChanged", err)
	}
	if _, err := ReadEntry(fsys, "users/a.json", entry(plain[1:])); !errors.Is(err, ErrChanged) {
		t.Errorf("changed size: %v, want ErrChanged", err)
	}
}
