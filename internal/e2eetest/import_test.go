//go:build synapse || conduit

package e2eetest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
	"github.com/transition-matrix/transition-matrix/export"
	"github.com/transition-matrix/transition-matrix/importer"
	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
	"github.com/transition-matrix/transition-matrix/synapseclient"
	"github.com/transition-matrix/transition-matrix/synapsedb"
)

// importedKeys exports syn (as `shim export` does), edits the export with edit when not nil,
// imports it with Synapse's database into a fresh Conduit database, and returns alice's device
// keys and master key as Conduit holds them.
func importedKeys(ctx context.Context, t *testing.T, syn *synapsetest.Server, s *Scenario, edit func(dir string) error) (devices map[string]json.RawMessage, master json.RawMessage) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "export")
	sum, err := export.Run(ctx, export.Config{Dir: dir, Synapse: synapseclient.Config{
		BaseURL: syn.BaseURL, ServerName: syn.ServerName, AdminToken: syn.AdminToken, Identity: syn.Identity()}})
	if err != nil || !sum.Complete {
		t.Fatalf("export: %v; failed: %+v", err, sum.FailedItems)
	}
	if edit != nil {
		if err := edit(dir); err != nil {
			t.Fatal(err)
		}
	}
	sdb, err := synapsedb.Open(ctx, syn.DatabasePath)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	db := conduittest.FreshDB(t, syn.ServerName, conduit.Version010)
	r, err := importer.Run(ctx, importer.Config{ExportDir: dir, Identity: syn.Identity(),
		OpenTarget: importer.ConduitTarget(db, "", syn.ServerName), Sessions: importer.SynapseSessions{DB: sdb}})
	if err != nil {
		t.Fatalf("import: %v (failed %+v)", err, r.Failed)
	}
	c, err := conduit.Open(db, conduit.Options{ServerName: syn.ServerName, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if devices, err = c.DeviceKeys(s.Alice.UserID); err != nil {
		t.Fatal(err)
	}
	cs, err := c.CrossSigningKeys(s.Alice.UserID)
	if err != nil {
		t.Fatal(err)
	}
	return devices, cs["master"]
}

// signers lists who signed a key object, by user.
func signers(t *testing.T, k json.RawMessage) map[string]bool {
	t.Helper()
	var v struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(k, &v); err != nil {
		t.Fatalf("key %s: %v", k, err)
	}
	out := map[string]bool{}
	for u := range v.Signatures {
		out[u] = true
	}
	return out
}
