// Package config loads the shim's YAML configuration, expands ${VAR} references, resolves the
// server's signing identity (directly or from Synapse's homeserver.yaml) and reports every problem
// at once, each with the key it concerns.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/transition-matrix/transition-matrix/signing"
)

// Secret is a string that never shows itself when printed or marshalled.
type Secret string

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// MarshalJSON hides the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// Config is the shim's configuration file.
type Config struct {
	ServerName     string   `yaml:"server_name"`
	SigningKeyPath string   `yaml:"signing_key_path"`
	SynapseConfig  string   `yaml:"synapse_config"`
	Synapse        Synapse  `yaml:"synapse"`
	Listen         string   `yaml:"listen"`
	TLS            TLS      `yaml:"tls"`
	AllowCIDRs     []string `yaml:"allow_cidrs"`
	Cache          Cache    `yaml:"cache"`
	Log            Log      `yaml:"log"`
	Metrics        Metrics  `yaml:"metrics"`
	Target         Target   `yaml:"target"`
	Limits         Limits   `yaml:"limits"`

	// Identity is the server name and its keys, resolved by Load.
	Identity *signing.Identity `yaml:"-"`
	// MAS says whether homeserver.yaml (synapse_config) hands logins to the Matrix Authentication
	// Service; zero without synapse_config.
	MAS MASDelegation `yaml:"-"`
	// Warnings are problems that do not stop the shim, such as a key file others can read.
	Warnings []string `yaml:"-"`
	// dir is the folder relative paths are resolved against.
	dir string
	// inlineSecrets are the keys of secrets written in the file itself (not ${VAR}).
	inlineSecrets []string
}

// Synapse says where the old server is and how to reach its admin API.
type Synapse struct {
	URL            string `yaml:"url"`
	FederationURL  string `yaml:"federation_url"`
	AdminToken     Secret `yaml:"admin_token"`
	AdminTokenFile string `yaml:"admin_token_file"`
	// MediaStorePath is Synapse's media_store_path (homeserver.yaml), read by the import for the
	// files of local media; relative paths are resolved against the configuration file's folder.
	MediaStorePath string `yaml:"media_store_path"`
}

// Target is the homeserver taking over (Conduit): its client API and an appservice as_token.
// The appservice is registered in Conduit with a non-exclusive user namespace `@.*:<server_name>`,
// so rejoin, warm and verify can act as any local user (?user_id=) and nobody's login is blocked.
type Target struct {
	URL       string `yaml:"url"`        // the target's client API, e.g. http://127.0.0.1:6167
	Token     Secret `yaml:"token"`      // the appservice as_token; prefer token_file or ${VAR}
	TokenFile string `yaml:"token_file"` // a file holding the as_token (mode 0600)
}

// TLS names a certificate and key for the shim's listener; both or neither.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Cache says where the verified event cache lives.
type Cache struct {
	Path string `yaml:"path"`
}

// Metrics says where Prometheus metrics are served, apart from the federation listener.
type Metrics struct {
	Listen string `yaml:"listen"` // host:port of the /metrics listener; empty = no metrics listener
}

// Log sets the log level (debug, info, warn, error) and format (json, console).
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Default returns the configuration every file starts from.
func Default() *Config {
	return &Config{
		Listen: "127.0.0.1:8448",
		Cache:  Cache{Path: "shim-cache"},
		Log:    Log{Level: "info", Format: "console"},
		dir:    ".",
	}
}

// Load reads, parses, validates and resolves a configuration file. A broken file is reported
// whole: the error lists every problem found (unknown keys, bad values, unreadable key and token
// files), each naming its key, so one run shows everything to fix.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, problems, err := parse(data, filepath.Dir(path), getenv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.Resolve(); err != nil {
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.warnInlineSecrets(path)
	return c, nil
}

var (
	unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type config\.(\w+)$`)
	wrongType    = regexp.MustCompile(`^line (\d+): cannot unmarshal (!!\w+)(?: .*)? into (\S+)$`)
)

// sectionOf maps the struct types of the file to their key prefixes.
var sectionOf = map[string]string{"Config": "", "Synapse": "synapse.", "TLS": "tls.", "Cache": "cache.", "Log": "log.", "Metrics": "metrics.", "Target": "target."}

// yamlKinds names YAML's tags for people.
var yamlKinds = map[string]string{"!!seq": "a list", "!!map": "a mapping", "!!str": "a string", "!!int": "a number",
	"!!bool": "true or false", "!!float": "a number", "!!null": "nothing"}

// describeYAMLError turns the YAML decoder's messages into ones that name the key; keyAt maps
// line numbers to the keys written on them.
func describeYAMLError(e string, keyAt map[int]string) error {
	if m := unknownField.FindStringSubmatch(e); m != nil {
		return fmt.Errorf("%s%s: unknown key (line %s)", sectionOf[m[3]], m[2], m[1])
	}
	if m := wrongType.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		want := strings.TrimPrefix(m[3], "[]")
		if want == "string" {
			want = "a string"
		}
		if strings.HasPrefix(m[3], "[]") {
			want = "a list of strings"
		}
		got := yamlKinds[m[2]]
		if got == "" {
			got = m[2]
		}
		if key := keyAt[line]; key != "" {
			return fmt.Errorf("%s: want %s, got %s (line %d)", key, want, got, line)
		}
	}
	return errors.New(strings.TrimPrefix(e, "yaml: "))
}

// keyLines records, for each line that holds a key or the start of its value, the key's dotted path.
func keyLines(n *yaml.Node, key string, at map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			keyLines(c, key, at)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if _, ok := at[c.Line]; !ok {
				at[c.Line] = fmt.Sprintf("%s[%d]", key, i)
			}
			keyLines(c, fmt.Sprintf("%s[%d]", key, i), at)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if key != "" {
				k = key + "." + k
			}
			at[n.Content[i].Line] = k
			if _, ok := at[n.Content[i+1].Line]; !ok {
				at[n.Content[i+1].Line] = k
			}
			keyLines(n.Content[i+1], k, at)
		}
	}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Parse reads YAML over the defaults, expanding ${VAR} in every string value; relative paths are
// taken from dir. It reports unknown keys, type errors and unset variables together with Validate's findings.
func Parse(data []byte, dir string, getenv func(string) string) (*Config, error) {
	c, problems, err := parse(data, dir, getenv)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return c, nil
}

// parse is Parse returning the configuration as far as it was read together with its problems;
// err is set only when the file is not YAML at all.
func parse(data []byte, dir string, getenv func(string) string) (*Config, []error, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Default()
	c.dir = dir
	var problems []error
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if len(root.Content) > 0 {
		problems = append(problems, c.noteAsWritten(&root)...)
		// Unknown keys and wrong types are found in the file as written, so their line numbers are
		// the file's; the values are then read from the tree with ${VAR} expanded.
		keyAt := map[int]string{}
		keyLines(&root, "", keyAt)
		check := yaml.NewDecoder(bytes.NewReader(data))
		check.KnownFields(true)
		if err := check.Decode(Default()); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return nil, nil, fmt.Errorf("not valid YAML: %w", err)
			}
			for _, e := range te.Errors {
				problems = append(problems, describeYAMLError(e, keyAt))
			}
		}
		expandEnv(&root, "", getenv, &problems)
		var te *yaml.TypeError
		if err := root.Decode(c); err != nil && !errors.As(err, &te) {
			return nil, nil, fmt.Errorf("not valid YAML: %w", err)
		}
	}
	if err := c.Validate(); err != nil {
		problems = append(problems, err)
	}
	return c, problems, nil
}

// expandEnv replaces ${VAR} in every scalar below n; key names the path for error messages.
func expandEnv(n *yaml.Node, key string, getenv func(string) string, problems *[]error) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			k := key
			if n.Kind == yaml.SequenceNode {
				k = fmt.Sprintf("%s[%d]", key, i)
			}
			expandEnv(c, k, getenv, problems)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if key != "" {
				k = key + "." + k
			}
			expandEnv(n.Content[i+1], k, getenv, problems)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			v := getenv(name)
			if v == "" {
				*problems = append(*problems, fmt.Errorf("%s: environment variable %s is not set", key, name))
			}
			return v
		})
		if n.Tag == "" || n.Tag == "!!str" {
			n.Style = yaml.DoubleQuotedStyle
		}
	}
}

// Validate checks every set value and returns all problems at once, each naming its key.
func (c *Config) Validate() error {
	var p []error
	add := func(key, format string, args ...any) {
		p = append(p, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.SynapseConfig == "" && c.SigningKeyPath == "":
		add("signing_key_path", "set it, or synapse_config, so the shim has Synapse's signing key")
	case c.SynapseConfig != "" && c.SigningKeyPath != "":
		add("signing_key_path", "set either signing_key_path or synapse_config, not both")
	}
	if c.SynapseConfig == "" && c.ServerName == "" {
		add("server_name", "required unless synapse_config names homeserver.yaml")
	}
	if c.ServerName != "" {
		if err := checkServerName(c.ServerName); err != nil {
			add("server_name", "%v", err)
		}
	}
	checkURL := func(key, v string) {
		if v == "" {
			return
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(key, "want an http:// or https:// URL, got %q", v)
		}
	}
	checkURL("synapse.url", c.Synapse.URL)
	checkURL("synapse.federation_url", c.Synapse.FederationURL)
	if c.Synapse.AdminToken != "" && c.Synapse.AdminTokenFile != "" {
		add("synapse.admin_token", "set either admin_token or admin_token_file, not both")
	}
	checkURL("target.url", c.Target.URL)
	if c.Target.Token != "" && c.Target.TokenFile != "" {
		add("target.token", "set either token or token_file, not both")
	}
	if c.Listen == "" {
		add("listen", "required (host:port)")
	} else if err := checkListen(c.Listen); err != nil {
		add("listen", "%v", err)
	}
	if c.Metrics.Listen != "" {
		switch err := checkListen(c.Metrics.Listen); {
		case err != nil:
			add("metrics.listen", "%v", err)
		case sameListener(c.Metrics.Listen, c.Listen):
			add("metrics.listen", "%q clashes with listen %q: metrics are served on a listener of their own", c.Metrics.Listen, c.Listen)
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		add("tls", "set both cert and key, or neither")
	}
	for i, s := range c.AllowCIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			if _, err2 := netip.ParseAddr(s); err2 != nil {
				add(fmt.Sprintf("allow_cidrs[%d]", i), "want an address or CIDR, got %q", s)
			}
		}
	}
	if c.Cache.Path == "" {
		add("cache.path", "required")
	}
	p = append(p, c.Limits.validate()...)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		add("log.format", "want json or console, got %q", c.Log.Format)
	}
	return errors.Join(p...)
}

// Require reports each named key that is unset; commands call it for what they need.
func (c *Config) Require(keys ...string) error {
	var p []error
	for _, k := range keys {
		var v string
		switch k {
		case "synapse.url":
			v = c.Synapse.URL
		case "synapse.admin_token":
			v = string(c.Synapse.AdminToken)
			k = "synapse.admin_token (or synapse.admin_token_file)"
		case "synapse.media_store_path":
			v = c.Synapse.MediaStorePath
		case "listen":
			v = c.Listen
		case "cache.path":
			v = c.Cache.Path
		case "target.url":
			v = c.Target.URL
			k = "target.url (or the -target flag)"
		case "target.token":
			v = string(c.Target.Token)
			k = "target.token (or target.token_file)"
		default:
			panic("config.Require: unknown key " + k)
		}
		if v == "" {
			p = append(p, fmt.Errorf("%s: required for this command", k))
		}
	}
	return errors.Join(p...)
}

// FederationURL is where Synapse's federation API is reached: synapse.federation_url or synapse.url.
func (c *Config) FederationURL() string {
	if c.Synapse.FederationURL != "" {
		return c.Synapse.FederationURL
	}
	return c.Synapse.URL
}

// MediaStorePath is synapse.media_store_path resolved against the configuration file's folder
// ("" when unset).
func (c *Config) MediaStorePath() string { return c.Path(c.Synapse.MediaStorePath) }

// OverrideTargetURL replaces target.url with a -target flag's value, when one was given.
func (c *Config) OverrideTargetURL(flagValue string) error {
	if flagValue == "" {
		return nil
	}
	u, err := url.Parse(flagValue)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-target: want an http:// or https:// URL, got %q", flagValue)
	}
	c.Target.URL = flagValue
	return nil
}

// Path resolves a path from the configuration against the configuration file's folder.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Resolve reads the signing keys (directly or through homeserver.yaml) and the token files,
// reporting every problem at once.
func (c *Config) Resolve() error {
	var p []error
	var id *signing.Identity
	var err error
	switch {
	case c.SynapseConfig == "" && c.SigningKeyPath == "":
		// Validate reported it: there is no key to read.
	case c.SynapseConfig != "":
		var mediaStore string
		id, mediaStore, c.MAS, err = readSynapseConfig(c.Path(c.SynapseConfig), &c.Warnings)
		if err == nil && c.Synapse.MediaStorePath == "" && mediaStore != "" {
			c.Synapse.MediaStorePath = mediaStore // absolute: resolved against homeserver.yaml's folder
		}
		if err != nil {
			p = append(p, fmt.Errorf("synapse_config: %w", err))
		} else if c.ServerName != "" && c.ServerName != id.ServerName {
			p = append(p, fmt.Errorf("server_name: %q differs from %q in %s", c.ServerName, id.ServerName, c.SynapseConfig))
		}
	default:
		keys, warnings, err := signing.ReadKeyFile(c.Path(c.SigningKeyPath))
		c.Warnings = append(c.Warnings, warnings...)
		if err != nil {
			p = append(p, fmt.Errorf("signing_key_path: %w", err))
		} else {
			id = &signing.Identity{ServerName: c.ServerName, Keys: keys}
		}
	}
	if id != nil {
		c.Identity = id
		c.ServerName = id.ServerName
	}
	if c.Synapse.AdminTokenFile != "" {
		if tok, err := c.readTokenFile(c.Synapse.AdminTokenFile, "admin token"); err != nil {
			p = append(p, fmt.Errorf("synapse.admin_token_file: %w", err))
		} else {
			c.Synapse.AdminToken = tok
		}
	}
	if c.Target.TokenFile != "" {
		if tok, err := c.readTokenFile(c.Target.TokenFile, "target token"); err != nil {
			p = append(p, fmt.Errorf("target.token_file: %w", err))
		} else {
			c.Target.Token = tok
		}
	}
	for _, f := range []struct{ key, path string }{{"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}} {
		if f.path == "" {
			continue
		}
		if fh, err := os.Open(c.Path(f.path)); err != nil {
			p = append(p, fmt.Errorf("%s: %w", f.key, err))
		} else {
			fh.Close()
		}
	}
	return errors.Join(p...)
}

// readTokenFile reads a token from a file (trimmed, not empty), warning when others can read it.
func (c *Config) readTokenFile(file, what string) (Secret, error) {
	path := c.Path(file)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s file %s is readable by group or others (mode %04o): run chmod 600 on it", what, path, st.Mode().Perm()))
	}
	return Secret(tok), nil
}

// readSynapseConfig takes server_name, the signing key, old_signing_keys and media_store_path from
// homeserver.yaml; relative paths are relative to that file's folder, and signing_key_path defaults
// to <server_name>.signing.key there.
func readSynapseConfig(path string, warnings *[]string) (*signing.Identity, string, MASDelegation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", MASDelegation{}, err
	}
	var hs struct {
		ServerName     string         `yaml:"server_name"`
		SigningKeyPath string         `yaml:"signing_key_path"`
		SigningKey     string         `yaml:"signing_key"`
		OldSigningKeys map[string]any `yaml:"old_signing_keys"`
		MediaStorePath string         `yaml:"media_store_path"`
		MAS            masBlock       `yaml:"matrix_authentication_service"`
		Experimental   struct {
			MSC3861 masBlock `yaml:"msc3861"`
		} `yaml:"experimental_features"`
	}
	if err := yaml.Unmarshal(data, &hs); err != nil {
		return nil, "", MASDelegation{}, fmt.Errorf("%s is not valid YAML: %w", path, err)
	}
	mas := MASDelegation{}
	switch {
	case hs.MAS.Enabled:
		mas = MASDelegation{Enabled: true, Key: "matrix_authentication_service", Endpoint: hs.MAS.Endpoint}
	case hs.Experimental.MSC3861.Enabled:
		mas = MASDelegation{Enabled: true, Key: "experimental_features.msc3861", Endpoint: hs.Experimental.MSC3861.Issuer}
	}
	mediaStore := hs.MediaStorePath
	if mediaStore != "" && !filepath.IsAbs(mediaStore) {
		mediaStore = filepath.Join(filepath.Dir(path), mediaStore)
	}
	var p []error
	if hs.ServerName == "" {
		p = append(p, fmt.Errorf("%s has no server_name", path))
	} else if err := checkServerName(hs.ServerName); err != nil {
		p = append(p, fmt.Errorf("%s: server_name: %w", path, err))
	}
	id := &signing.Identity{ServerName: hs.ServerName}
	switch {
	case hs.SigningKey != "":
		keys, err := signing.ParseKeyFile(strings.NewReader(hs.SigningKey), path+" signing_key")
		if err != nil {
			p = append(p, err)
		}
		id.Keys = keys
	default:
		keyPath := hs.SigningKeyPath
		if keyPath == "" {
			keyPath = hs.ServerName + ".signing.key"
		}
		if !filepath.IsAbs(keyPath) {
			keyPath = filepath.Join(filepath.Dir(path), keyPath)
		}
		keys, w, err := signing.ReadKeyFile(keyPath)
		*warnings = append(*warnings, w...)
		if err != nil {
			p = append(p, fmt.Errorf("%s: signing_key_path: %w", path, err))
		}
		id.Keys = keys
	}
	old, err := signing.ParseOldSigningKeys(hs.OldSigningKeys)
	if err != nil {
		p = append(p, fmt.Errorf("%s: %w", path, err))
	}
	id.OldKeys = old
	if err := errors.Join(p...); err != nil {
		return nil, "", MASDelegation{}, err
	}
	return id, mediaStore, mas, nil
}

// MASDelegation is homeserver.yaml's hand-over of logins to the Matrix Authentication Service:
// `matrix_authentication_service` (Synapse ≥ 1.136) or `experimental_features.msc3861` (earlier).
type MASDelegation struct {
	Enabled bool
	// Key names the block that enables it.
	Key string
	// Endpoint is MAS's URL (endpoint), or its issuer for msc3861; "" when not given.
	Endpoint string
}

// masBlock is the part of either MAS block the shim reads.
type masBlock struct {
	Enabled  bool   `yaml:"enabled"`
	Endpoint string `yaml:"endpoint"`
	Issuer   string `yaml:"issuer"`
}

// checkListen checks a listen address: host:port (or :port) with a port from 0 to 65535 and a host
// that is an IP address or a host name.
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return fmt.Errorf("want host:port, got %q", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q of %q is not a number from 0 to 65535 (0 picks a free one)", port, s)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /@[]") {
		return fmt.Errorf("host %q of %q is neither an IP address nor a host name", host, s)
	}
	return nil
}

// sameListener reports whether binding both addresses would take the same port on some address.
func sameListener(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

func checkServerName(s string) error {
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if port == "" {
			return fmt.Errorf("%q has an empty port", s)
		}
		host = h
	}
	if host == "" || strings.ContainsAny(host, "/ @") {
		return fmt.Errorf("%q is not a server name (host or host:port)", s)
	}
	return nil
}
