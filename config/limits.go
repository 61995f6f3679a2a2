package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

func init() { sectionOf["Limits"] = "limits." }

// Limits bound what one client can make `shim serve` hold; zero values take the federation
// package's defaults (docs/shim.md lists them).
type Limits struct {
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`    // request line and headers; 64 KiB
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`      // one request body; 1 MiB
	HeaderReadTimeout time.Duration `yaml:"header_read_timeout"` // to receive the headers; 10s
	BodyReadTimeout   time.Duration `yaml:"body_read_timeout"`   // to receive the body; 30s
	MaxBodyReaders    int           `yaml:"max_body_readers"`    // bodies read and checked at once; 4
	RequestTimeout    time.Duration `yaml:"request_timeout"`     // to answer, Synapse included; 60s
	IdleTimeout       time.Duration `yaml:"idle_timeout"`        // a kept-alive connection's wait; 2m
}

// validate checks the limits that are set, each problem naming its key.
func (l Limits) validate() []error {
	var p []error
	add := func(key, format string, args ...any) {
		p = append(p, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"limits.header_read_timeout", l.HeaderReadTimeout}, {"limits.body_read_timeout", l.BodyReadTimeout},
		{"limits.request_timeout", l.RequestTimeout}, {"limits.idle_timeout", l.IdleTimeout}} {
		switch {
		case d.v < 0:
			add(d.key, "want a positive duration such as 30s, got %s", d.v)
		case d.v > 0 && d.v < time.Millisecond:
			add(d.key, "%s is too short: write a duration such as 30s", d.v)
		}
	}
	for _, n := range []struct {
		key string
		v   int64
	}{{"limits.max_header_bytes", int64(l.MaxHeaderBytes)}, {"limits.max_body_bytes", l.MaxBodyBytes},
		{"limits.max_body_readers", int64(l.MaxBodyReaders)}} {
		if n.v < 0 {
			add(n.key, "want a positive number (0 or unset for the default), got %d", n.v)
		}
	}
	return p
}

// noteAsWritten looks at the file as written, before ${VAR} expansion: it records secrets
// written inline (for warnInlineSecrets) and refuses durations without a unit.
func (c *Config) noteAsWritten(root *yaml.Node) []error {
	var problems []error
	for _, key := range [][2]string{{"synapse", "admin_token"}, {"target", "token"}} {
		if v, ok := scalarAt(root, key[0], key[1]); ok && v != "" && !strings.Contains(v, "${") {
			c.inlineSecrets = append(c.inlineSecrets, key[0]+"."+key[1])
		}
	}
	for _, key := range []string{"header_read_timeout", "body_read_timeout", "request_timeout", "idle_timeout"} {
		if v, ok := scalarAt(root, "limits", key); ok && v != "" && strings.Trim(v, "0123456789") == "" {
			problems = append(problems, fmt.Errorf("limits.%s: %s has no unit: write a duration such as 30s", key, v))
		}
	}
	return problems
}

// warnInlineSecrets warns about tokens written in a configuration file group or others can
// read, as readTokenFile does for token files.
func (c *Config) warnInlineSecrets(path string) {
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm()&0o077 == 0 {
		return
	}
	for _, key := range c.inlineSecrets {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s is written in %s, which group or others can read (mode %04o): run chmod 600 on it, or move the token to a file (mode 0600) or ${VAR}",
			key, path, st.Mode().Perm()))
	}
}

// scalarAt returns the scalar at section.key of a YAML document, as written.
func scalarAt(doc *yaml.Node, section, key string) (string, bool) {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, want := range []string{section, key} {
		if n.Kind != yaml.MappingNode {
			return "", false
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == want {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return "", false
		}
		n = next
	}
	return n.Value, n.Kind == yaml.ScalarNode
}
