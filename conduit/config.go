package conduit

import (
	"errors"
	"fmt"

	"github.com/BurntSushi/toml"
)

// ErrConfig is a Conduit configuration file the import cannot use.
var ErrConfig = errors.New("unusable Conduit configuration file")

// Config is what the import reads from Conduit's configuration file (conduit.toml, table [global]).
type Config struct {
	// ServerName is global.server_name.
	ServerName string
	// Backend is global.database_backend: "sqlite" or "rocksdb".
	Backend string
	// DatabasePath is global.database_path.
	DatabasePath string
}

// ReadConfig reads server_name, database_backend and database_path from Conduit's configuration file.
func ReadConfig(path string) (Config, error) {
	var f struct {
		Global struct {
			ServerName      string `toml:"server_name"`
			DatabaseBackend string `toml:"database_backend"`
			DatabasePath    string `toml:"database_path"`
		} `toml:"global"`
	}
	if _, err := toml.DecodeFile(path, &f); err != nil {
		return Config{}, fmt.Errorf("%w %s: %v", ErrConfig, path, err)
	}
	c := Config{ServerName: f.Global.ServerName, Backend: f.Global.DatabaseBackend, DatabasePath: f.Global.DatabasePath}
	switch c.Backend {
	case BackendSQLite, BackendRocksDB:
	case "":
		return Config{}, fmt.Errorf("%w %s: no global.database_backend (Conduit requires it: \"rocksdb\" or \"sqlite\")", ErrConfig, path)
	default:
		return Config{}, fmt.Errorf("%w %s: database_backend %q is neither \"sqlite\" nor \"rocksdb\"", ErrConfig, path, c.Backend)
	}
	if c.DatabasePath == "" {
		return Config{}, fmt.Errorf("%w %s: no global.database_path", ErrConfig, path)
	}
	return c, nil
}
