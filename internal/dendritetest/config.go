package dendritetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/transition-matrix/transition-matrix/signing"
)

// Settings are what the harness changes in generate-config's output.
type Settings struct {
	KeyPath      string        // the PEM signing key file
	KeyID        signing.KeyID // its key ID (the PEM's Key-ID header wins anyway)
	SharedSecret string        // enables /_synapse/admin/v1/register
}

// EditConfig rewrites a dendrite.yaml from generate-config for a loopback test server: our key,
// in-memory JetStream, shared-secret registration, no rate limiting, no key notaries or identity
// servers, no server notices, cheap bcrypt. Every key it sets must already exist, so a changed
// config layout fails here, naming the key, instead of being silently ignored.
func EditConfig(in []byte, s Settings) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(in, &doc); err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a YAML mapping")
	}
	root := doc.Content[0]
	edits := []struct {
		path  string
		value any
	}{
		{"global.private_key", s.KeyPath},
		{"global.key_id", string(s.KeyID)},
		{"global.trusted_third_party_id_servers", []string{}},
		{"global.jetstream.in_memory", true},
		{"global.server_notices.enabled", false},
		{"global.report_stats.enabled", false},
		{"client_api.registration_shared_secret", s.SharedSecret},
		{"client_api.rate_limiting.enabled", false},
		{"federation_api.key_perspectives", []string{}},
		{"user_api.bcrypt_cost", 4},
		{"logging", []map[string]any{{"type": "std", "level": "info"}}}, // stderr, captured by the harness
	}
	var errs []error
	for _, e := range edits {
		if err := setPath(root, strings.Split(e.path, "."), e.value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.path, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// setPath replaces the value at path (mapping keys) in a mapping node; the key must exist.
func setPath(m *yaml.Node, path []string, value any) error {
	for i, key := range path {
		if m.Kind != yaml.MappingNode {
			return fmt.Errorf("%s is not a mapping", strings.Join(path[:i], "."))
		}
		var next *yaml.Node
		for j := 0; j+1 < len(m.Content); j += 2 {
			if m.Content[j].Value == key {
				next = m.Content[j+1]
				break
			}
		}
		if next == nil {
			return fmt.Errorf("no key %q in generate-config's output", key)
		}
		if i == len(path)-1 {
			var v yaml.Node
			if err := v.Encode(value); err != nil {
				return err
			}
			*next = v
			return nil
		}
		m = next
	}
	return nil
}
