package signing

import (
	"crypto/ed25519"
	"testing"
)

// benchEvent is a typical message PDU of about 1 KB.
func benchEvent(b *testing.B, k Key) []byte {
	b.Helper()
	ev := `{"auth_events":["$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","$ccccccccccccccccccccccccccccccccccccccccccc"],` +
		`"content":{"body":"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.","msgtype":"m.text","m.relates_to":{"m.in_reply_to":{"event_id":"$ddddddddddddddddddddddddddddddddddddddddddd"}}},` +
		`"depth":12345,"origin":"synapse.test","origin_server_ts":1700000000000,"prev_events":["$eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"],"room_id":"!abcdefghijklmnop:synapse.test","sender":"@alice:synapse.test","type":"m.room.message"}`
	signed, err := SignEvent("10", "synapse.test", k, []byte(ev))
	if err != nil {
		b.Fatal(err)
	}
	return signed
}

// BenchmarkEd25519Verify is the machine's raw Ed25519 verification rate, the ceiling for event checks.
func BenchmarkEd25519Verify(b *testing.B) {
	k := randomKey(b, "ed25519:a_b")
	msg := make([]byte, 600)
	sig := ed25519.Sign(k.PrivateKey(), msg)
	pub := k.PublicKey()
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}

// BenchmarkVerifyEvent is one full event check: redaction, canonical JSON, signature, content hash.
func BenchmarkVerifyEvent(b *testing.B) {
	k := randomKey(b, "ed25519:a_b")
	ev := benchEvent(b, k)
	pub := k.PublicKey()
	b.SetBytes(int64(len(ev)))
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifyEventSignature("10", "synapse.test", k.ID, pub, ev); err != nil {
			b.Fatal(err)
		}
		if _, err := ContentHash(ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkCanonicalJSON re-encodes a 1 KB event.
func BenchmarkCanonicalJSON(b *testing.B) {
	ev := benchEvent(b, randomKey(b, "ed25519:a_b"))
	b.SetBytes(int64(len(ev)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CanonicalJSON(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRequest is one X-Matrix check of a GET.
func BenchmarkVerifyRequest(b *testing.B) {
	id := &Identity{ServerName: "synapse.test", Keys: []Key{randomKey(b, "ed25519:a_b")}}
	uri := "/_matrix/federation/v1/backfill/%21abcdefghijklmnop%3Asynapse.test?v=%24eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee&limit=100"
	x, _ := SignRequest(id, "GET", "synapse.test", uri, nil)
	r := Request{Method: "GET", URI: uri, Authorization: []string{x.String()}}
	lookup := id.Lookup()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyRequest(r, "synapse.test", lookup); err != nil {
			b.Fatal(err)
		}
	}
}
