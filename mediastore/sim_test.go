package mediastore_test

import (
	"bytes"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/mediastore"
	"github.com/transition-matrix/transition-matrix/mediastore/mediastoretest"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// TestAdminListAndStoreAgree walks what the import does on the Synapse side: list every user's
// media through the admin API, then read each file from the media store.
func TestAdminListAndStoreAgree(t *testing.T) {
	w := testWorld(t)
	sim := synapsesim.Start(t, synapsesim.Options{World: w})
	c, err := synapseclient.New(synapseclient.Config{BaseURL: sim.URL, AdminToken: sim.AdminToken(), ServerName: w.ServerName})
	if err != nil {
		t.Fatal(err)
	}
	store, err := mediastore.Open(mediastoretest.Write(t, w))
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, u := range w.Users {
		items, err := c.Admin().AllUserMedia(t.Context(), u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != len(u.Media) {
			t.Fatalf("%s: %d items listed, want %d", u.ID, len(items), len(u.Media))
		}
		for i, it := range items {
			b, err := store.ReadLocal(it.MediaID, it.MediaLength)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, u.Media[i].Bytes) {
				t.Errorf("%s: media %s differs from the world", u.ID, it.MediaID)
			}
			files++
		}
	}
	if files < 5 {
		t.Errorf("%d files read, want several", files)
	}
}
