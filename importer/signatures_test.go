package importer

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/exportfmt"
)

// TestPlanCarriesOthersSignatures: bob's signature on alice's master key (from Synapse's
// database) is merged into the master key beside alice's own; one on a key the export lacks is
// named in the notes, not invented.
func TestPlanCarriesOthersSignatures(t *testing.T) {
	master := `{"user_id":"@alice:hs.test","usage":["master"],"keys":{"ed25519:MPUB":"MPUB"},"signatures":{"@alice:hs.test":{"ed25519:ADEV":"own"}}}`
	u := &exportfmt.UserFile{UID: "@alice:hs.test", Devices: []json.RawMessage{json.RawMessage(`{"device_id":"ADEV"}`)}}
	u.E2E.MasterKey = json.RawMessage(master)
	s := &Sessions{Signatures: []KeySignature{
		{Signer: "@bob:hs.test", KeyID: "ed25519:BUSK", Target: "MPUB", Signature: "by-bob"},
		{Signer: "@bob:hs.test", KeyID: "ed25519:BUSK", Target: "OLDMASTER", Signature: "stale"},
	}}
	p, err := planUser(u, s, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Keys       map[string]string            `json:"keys"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(p.MasterKey, &got); err != nil {
		t.Fatal(err)
	}
	if got.Signatures["@bob:hs.test"]["ed25519:BUSK"] != "by-bob" || got.Signatures["@alice:hs.test"]["ed25519:ADEV"] != "own" || got.Keys["ed25519:MPUB"] != "MPUB" {
		t.Errorf("master key after the merge: %s", p.MasterKey)
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "OLDMASTER") {
		t.Errorf("notes %q, want one naming OLDMASTER", p.Notes)
	}
}
