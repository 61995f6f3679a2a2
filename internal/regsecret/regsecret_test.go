package regsecret

import "testing"

func TestMAC(t *testing.T) {
	// Vectors computed with Python's hmac module.
	if got := MAC("sekrit", "abc", "alice", "pw", false); got != "75234cf3c9b218700b956bc57fad9ad2d6be431c" {
		t.Errorf("notadmin MAC = %s", got)
	}
	if got := MAC("sekrit", "abc", "alice", "pw", true); got != "d3a80f7950d54cae076932b58b789f88f33e41c7" {
		t.Errorf("admin MAC = %s", got)
	}
}
