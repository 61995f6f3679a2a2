package conduit_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
)

func TestReadConfig(t *testing.T) {
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "conduit.toml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Conduit's example configuration, trimmed to the keys read here and a few it has around them.
	good := write(`[global]
server_name = "example.org"
database_backend = "rocksdb"
database_path = "/var/lib/matrix-conduit/"
port = 6167
max_request_size = 20_000_000
`)
	c, err := conduit.ReadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if c != (conduit.Config{ServerName: "example.org", Backend: conduit.BackendRocksDB, DatabasePath: "/var/lib/matrix-conduit/"}) {
		t.Errorf("read %+v", c)
	}
	for _, bad := range []struct{ body, say string }{
		{`[global]` + "\n" + `database_path = "/x"`, "no global.database_backend"},
		{`[global]` + "\n" + `database_backend = "heed"` + "\n" + `database_path = "/x"`, `"heed" is neither`},
		{`[global]` + "\n" + `database_backend = "sqlite"`, "no global.database_path"},
		{`[global` + "\n", "conduit.toml"},
	} {
		_, err := conduit.ReadConfig(write(bad.body))
		if !errors.Is(err, conduit.ErrConfig) || !strings.Contains(err.Error(), bad.say) {
			t.Errorf("%q: %v, want ErrConfig saying %q", bad.body, err, bad.say)
		}
	}
	if _, err := conduit.ReadConfig(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, conduit.ErrConfig) {
		t.Errorf("missing file: %v", err)
	}
}

func TestOpenNamesTheBackend(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, conduit.FileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "CURRENT"), []byte("MANIFEST-000001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := conduit.Open(dir, conduit.Options{ServerName: server})
	if !errors.Is(err, conduit.ErrBackend) || !strings.Contains(err.Error(), "-backend") {
		t.Errorf("both backends' files: %v, want ErrBackend naming -backend", err)
	}
	if _, err := conduit.Open(dir, conduit.Options{ServerName: server, Backend: "heed"}); !errors.Is(err, conduit.ErrBackend) {
		t.Errorf("unknown backend: %v", err)
	}
	os.Remove(filepath.Join(dir, conduit.FileName))
	if _, err := conduit.Open(dir, conduit.Options{ServerName: server, Backend: conduit.BackendSQLite}); !errors.Is(err, conduit.ErrNoDatabase) || !strings.Contains(err.Error(), "-backend rocksdb") {
		t.Errorf("sqlite asked, RocksDB there: %v", err)
	}
}
