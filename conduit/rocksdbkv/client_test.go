package rocksdbkv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHelper writes an executable shell script standing in for the helper.
func fakeHelper(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), HelperName)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindHelperNamesTheFix(t *testing.T) {
	t.Setenv(HelperEnv, "")
	t.Setenv("PATH", t.TempDir())
	_, err := FindHelper()
	if !errors.Is(err, ErrNoHelper) {
		t.Fatalf("err = %v, want ErrNoHelper", err)
	}
	for _, want := range []string{"scripts/install-rocksdb-helper", HelperEnv} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	t.Setenv(HelperEnv, filepath.Join(t.TempDir(), "missing"))
	if _, err := FindHelper(); !errors.Is(err, ErrNoHelper) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing $%s: %v", HelperEnv, err)
	}
	h := fakeHelper(t, "exit 0\n")
	t.Setenv(HelperEnv, h)
	if got, err := FindHelper(); err != nil || got != h {
		t.Errorf("FindHelper = %q, %v; want %q", got, err, h)
	}
}

func TestOpenReportsLockAndErrors(t *testing.T) {
	cases := []struct {
		name   string
		script string
		want   error
		say    string
	}{
		// status 2, message "LOCK busy" (9 bytes)
		{"in use", `printf '\002\000\000\000\011LOCK busy'`, ErrInUse, "stop Conduit"},
		// status 1, message "boom" (4 bytes)
		{"error", `printf '\001\000\000\000\004boom'`, ErrHelper, "boom"},
		{"dies at once", `echo "no rocksdict here" >&2; exit 3`, ErrHelper, "no rocksdict here"},
		{"wrong protocol", `printf '\000\000\000\000\005old 0'; cat >/dev/null`, ErrHelper, "rebuild the helper"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(t.TempDir(), Options{Helper: fakeHelper(t, c.script)})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.say) {
				t.Errorf("error %q does not say %q", err, c.say)
			}
		})
	}
}

// A helper that dies in the middle of an answer fails that call and every later one; nothing hangs.
func TestBrokenHelperFailsEveryCall(t *testing.T) {
	// The hello, then one byte of an answer, then exit.
	db, err := Open(t.TempDir(), Options{Helper: fakeHelper(t, `printf '\000\000\000\000\016shim-rocksdb 1'; head -c 1 >/dev/null; printf '\000'; exit 0`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Get("global", []byte("c")); !errors.Is(err, ErrHelper) {
		t.Fatalf("Get from a dying helper: %v", err)
	}
	if err := db.Write([]Op{{CF: "global", Key: []byte("c"), Value: []byte{1}}}); !errors.Is(err, ErrHelper) {
		t.Fatalf("Write after the helper broke: %v", err)
	}
	db.Close()
}
