package verify

import "testing"

// TestKeysMatchAcceptsOnlyOtherUsersAddedSignatures: bob's signature the import added to alice's
// master key is no difference; a changed key or a lost or changed signature of hers is.
func TestKeysMatchAcceptsOnlyOtherUsersAddedSignatures(t *testing.T) {
	const owner = "@alice:hs"
	want := `{"user_id":"@alice:hs","usage":["master"],"keys":{"ed25519:K":"K"},"signatures":{"@alice:hs":{"ed25519:D":"s1"}}}`
	for _, c := range []struct {
		name, got string
		ok        bool
	}{
		{"same", want, true},
		{"bob's signature added", `{"user_id":"@alice:hs","usage":["master"],"keys":{"ed25519:K":"K"},"signatures":{"@alice:hs":{"ed25519:D":"s1"},"@bob:hs":{"ed25519:B":"s2"}}}`, true},
		{"another key", `{"user_id":"@alice:hs","usage":["master"],"keys":{"ed25519:X":"X"},"signatures":{"@alice:hs":{"ed25519:D":"s1"}}}`, false},
		{"her signature lost", `{"user_id":"@alice:hs","usage":["master"],"keys":{"ed25519:K":"K"}}`, false},
		{"her signature changed", `{"user_id":"@alice:hs","usage":["master"],"keys":{"ed25519:K":"K"},"signatures":{"@alice:hs":{"ed25519:D":"zz"}}}`, false},
		{"a signature of hers added", `{"user_id":"@alice:hs","usage":["master"],"keys":{"ed25519:K":"K"},"signatures":{"@alice:hs":{"ed25519:D":"s1","ed25519:E":"s3"}}}`, false},
	} {
		ok, err := keysMatch(owner, []byte(want), []byte(c.got))
		if err != nil || ok != c.ok {
			t.Errorf("%s: keysMatch = %v, %v; want %v", c.name, ok, err, c.ok)
		}
	}
}
