package world

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
)

func TestFallbackKeysAndTokenExpiry(t *testing.T) {
	w := testWorld(t)
	var keys, used, expiring int
	for _, u := range w.Users {
		for _, d := range u.Devices {
			if d.AccessTokenValidUntilMS != 0 {
				expiring++
			}
			f := d.FallbackKey
			if (f != nil) != (d.Keys != nil) {
				t.Errorf("%s %s: fallback key %v but device keys %v", u.ID, d.ID, f != nil, d.Keys != nil)
			}
			if f == nil {
				continue
			}
			keys++
			if f.Used {
				used++
			}
			pub := d.Ed25519.Public().(ed25519.PublicKey)
			if err := gmsl.VerifyJSON(u.ID, gmsl.KeyID("ed25519:"+d.ID), pub, f.JSON); err != nil {
				t.Errorf("%s %s: fallback key signature: %v", u.ID, d.ID, err)
			}
			if f.Algorithm != "signed_curve25519" || !strings.Contains(string(f.JSON), `"fallback":true`) || len(f.KeyID) != 6 {
				t.Errorf("%s %s: fallback key %+v", u.ID, d.ID, f)
			}
		}
	}
	if keys < 5 || used != 1 || expiring != 1 {
		t.Errorf("%d fallback keys (%d used), %d expiring tokens; want several, 1, 1", keys, used, expiring)
	}
}

func TestMedia(t *testing.T) {
	w := testWorld(t)
	ids := map[string]bool{}
	var thumbs, quarantined, unnamed int
	for _, u := range w.Users {
		if u.Profile.AvatarURL != "" && (len(u.Media) == 0 || "mxc://"+w.ServerName+"/"+u.Media[0].ID != u.Profile.AvatarURL) {
			t.Errorf("%s: first media item is not the avatar %s", u.ID, u.Profile.AvatarURL)
		}
		for _, m := range u.Media {
			if ids[m.ID] || len(m.ID) != 24 || strings.Trim(m.ID, letters) != "" {
				t.Errorf("%s: media ID %q repeated or not 24 letters", u.ID, m.ID)
			}
			ids[m.ID] = true
			if len(m.Bytes) == 0 || len(m.Bytes) > 4096 || m.CreatedTS <= u.CreationTS || !strings.Contains(m.ContentType, "/") {
				t.Errorf("%s: media %s: %d bytes, created %d, type %q", u.ID, m.ID, len(m.Bytes), m.CreatedTS, m.ContentType)
			}
			if m.ContentType == "image/png" && !bytes.HasPrefix(m.Bytes, []byte("\x89PNG")) {
				t.Errorf("%s: %s is no PNG", u.ID, m.ID)
			}
			thumbs += len(m.Thumbnails)
			if m.QuarantinedBy != "" {
				quarantined++
			}
			if m.UploadName == "" {
				unnamed++
			}
		}
	}
	if thumbs != 2 || quarantined != 1 || unnamed != 1 {
		t.Errorf("%d thumbnails, %d quarantined, %d unnamed; want 2, 1, 1", thumbs, quarantined, unnamed)
	}
	th := Thumbnail{Width: 96, Height: 72, ContentType: "image/jpeg", Method: "scale"}
	if th.FileName() != "96-72-image-jpeg-scale" {
		t.Errorf("thumbnail file name %q", th.FileName())
	}
	a, _ := Generate(Options{Seed: 42, OldKeyEvents: 12, Workers: 1})
	for i, u := range a.Users {
		for j, m := range u.Media {
			if !bytes.Equal(m.Bytes, w.Users[i].Media[j].Bytes) {
				t.Fatalf("%s media %d differs between two generations", u.ID, j)
			}
		}
	}
}
