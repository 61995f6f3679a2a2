package cutover

const alice = "@alice:example.org"

// present says whether a key is in the answer (not absent and not null).
func present(raw []byte) bool { return len(raw) > 0 && string(raw) != "null" }
