package world

import (
	"crypto/ecdh"
	"math/rand/v2"
	"strings"
)

// sessionsAndMedia adds what only Synapse's database and media store hold: fallback keys, a token
// expiry and local media. It draws from its own random stream, so everything generated before it
// stays byte-identical to worlds made before it existed.
func (g *gen) sessionsAndMedia() error {
	rng := rand.New(rand.NewPCG(g.opts.Seed, 0x53657373696f6e)) // "Session"
	seed32 := func() []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	base := g.opts.BaseTime.UnixMilli()
	for _, u := range g.w.Users {
		for k, d := range u.Devices {
			if u.Localpart == "alice" && k == 1 {
				// A session with an expiry (refresh tokens), far enough out to be valid on any test's clock.
				d.AccessTokenValidUntilMS = base + 10*365*86400000
			}
			if d.Keys == nil {
				continue
			}
			priv, _ := ecdh.X25519().NewPrivateKey(seed32())
			obj := mustJSON(map[string]any{"key": b64(priv.PublicKey().Bytes()), "fallback": true})
			signed, err := sign(u.ID, "ed25519:"+d.ID, d.Ed25519, obj)
			if err != nil {
				return err
			}
			d.FallbackKey = &FallbackKey{
				Algorithm: "signed_curve25519", KeyID: "AAAAB" + randString(rng, 1, upper),
				JSON: signed, Used: u.Localpart == "bob" && k == 0,
			}
		}
		g.media(rng, u, base)
	}
	return nil
}

// media gives the user an upload for its avatar and, for alice, bob and carol, a few more: a text
// file, an image with a thumbnail, a quarantined file, one without an upload name.
func (g *gen) media(rng *rand.Rand, u *User, base int64) {
	ts := u.CreationTS + 120000
	add := func(id, ctype, name string, body []byte) *Media {
		ts += 1000 + int64(rng.IntN(60000))
		m := &Media{ID: id, ContentType: ctype, UploadName: name, CreatedTS: ts, Bytes: body}
		if rng.IntN(2) == 0 {
			m.LastAccessTS = base - int64(rng.IntN(86400000))
		}
		u.Media = append(u.Media, m)
		return m
	}
	if id, ok := strings.CutPrefix(u.Profile.AvatarURL, "mxc://"+g.opts.ServerName+"/"); ok {
		add(id, "image/png", "avatar.png", fakePNG(rng, 64+rng.IntN(256)))
	}
	newID := func() string { return randString(rng, 24, letters) }
	switch u.Localpart {
	case "alice":
		add(newID(), "text/plain", "notes.txt", []byte("Notes of "+u.ID+": remember the milk.\n"))
		m := add(newID(), "image/png", "holiday.png", fakePNG(rng, 900+rng.IntN(300)))
		m.Thumbnails = []Thumbnail{
			{Width: 32, Height: 32, ContentType: "image/png", Method: "crop", Bytes: fakePNG(rng, 80)},
			{Width: 96, Height: 72, ContentType: "image/jpeg", Method: "scale", Bytes: randBytes(rng, 150)},
		}
	case "bob":
		m := add(newID(), "application/octet-stream", "suspicious.bin", randBytes(rng, 200+rng.IntN(100)))
		m.QuarantinedBy = g.local("admin")
	case "carol":
		add(newID(), "image/jpeg", "", randBytes(rng, 120+rng.IntN(100)))
	}
}

// fakePNG returns n bytes that start with the PNG signature (enough for a content sniffer).
func fakePNG(rng *rand.Rand, n int) []byte {
	b := randBytes(rng, n)
	copy(b, "\x89PNG\r\n\x1a\n")
	return b
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
