package signing_test

import (
	"crypto/ed25519"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// BenchmarkCheckPDU is CheckPDU on the events of a generated world (room versions 1 to 11, as
// Synapse serves them), next to raw Ed25519 on a message of the same average size.
func BenchmarkCheckPDU(b *testing.B) {
	w, err := world.Generate(world.Options{Seed: 32, MessagesPerRoom: 150, OldKeyEvents: 5})
	if err != nil {
		b.Fatal(err)
	}
	keys := worldKeys(w)
	type sample struct {
		version string
		raw     []byte
	}
	var evs []sample
	size := 0
	for _, r := range w.Rooms {
		for _, e := range r.Events {
			if _, err := signing.CheckPDU(r.Version, e.JSON, keys.lookup); err == nil {
				evs = append(evs, sample{r.Version, e.JSON})
				size += len(e.JSON)
			}
		}
	}
	size /= len(evs)
	b.Logf("%d events, %d bytes each on average", len(evs), size)
	b.Run("ed25519", func(b *testing.B) {
		priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
		msg := make([]byte, size)
		sig := ed25519.Sign(priv, msg)
		pub := priv.Public().(ed25519.PublicKey)
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("verify failed")
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s := evs[i%len(evs)]
			i++
			if _, err := signing.CheckPDU(s.version, s.raw, keys.lookup); err != nil {
				b.Fatal(err)
			}
		}
	})
}
