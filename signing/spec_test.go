package signing

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// The Matrix specification's cryptographic test vectors (appendices, "Cryptographic Test Vectors").
const (
	specSeed      = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
	specPublicKey = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
)

func specKey(t testing.TB) Key {
	t.Helper()
	seed, err := DecodeBase64(specSeed)
	if err != nil {
		t.Fatal(err)
	}
	return Key{ID: "ed25519:1", Seed: seed}
}

func TestSpecKeyDerivation(t *testing.T) {
	k := specKey(t)
	if got := hex.EncodeToString(k.Seed); got != "6090c103d5e7af6b15a970fd563ed75549e6159719ae5c3c31dee4316fb75c0d" {
		t.Fatalf("seed = %s", got)
	}
	if got := EncodeBase64(k.PublicKey()); got != specPublicKey {
		t.Fatalf("public key = %s, want %s", got, specPublicKey)
	}
}

func TestSpecJSONSigning(t *testing.T) {
	k := specKey(t)
	cases := []struct{ in, want string }{
		{`{}`, `{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}`},
		{`{"two":"Two", "one":1}`, `{"one":1,"signatures":{"domain":{"ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}},"two":"Two"}`},
	}
	for _, c := range cases {
		got, err := SignJSON("domain", k, []byte(c.in))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("SignJSON(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
		if err := VerifyJSON("domain", "ed25519:1", k.PublicKey(), got); err != nil {
			t.Errorf("VerifyJSON of the spec vector: %v", err)
		}
	}
}

func TestSpecEventSigning(t *testing.T) {
	k := specKey(t)
	cases := []struct{ name, in, want string }{
		{"minimal",
			`{"room_id":"!x:domain","sender":"@a:domain","origin":"domain","origin_server_ts":1000000,"signatures":{},"hashes":{},"type":"X","content":{},"prev_events":[],"auth_events":[],"depth":3,"unsigned":{"age_ts":1000000}}`,
			`{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin":"domain","origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","signatures":{"domain":{"ed25519:1":"KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},"type":"X","unsigned":{"age_ts":1000000}}`},
		{"message",
			`{"content":{"body":"Here is the message content"},"event_id":"$0:domain","origin":"domain","origin_server_ts":1000000,"type":"m.room.message","room_id":"!r:domain","sender":"@u:domain","signatures":{},"unsigned":{"age_ts":1000000}}`,
			`{"content":{"body":"Here is the message content"},"event_id":"$0:domain","hashes":{"sha256":"onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},"origin":"domain","origin_server_ts":1000000,"room_id":"!r:domain","sender":"@u:domain","signatures":{"domain":{"ed25519:1":"Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"}},"type":"m.room.message","unsigned":{"age_ts":1000000}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The spec's vectors use the redaction algorithm of room versions before 11.
			got, err := SignEvent("1", "domain", k, []byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Fatalf("SignEvent\n got %s\nwant %s", got, c.want)
			}
			if err := VerifyEventSignature("1", "domain", "ed25519:1", k.PublicKey(), got); err != nil {
				t.Fatal(err)
			}
			tampered := bytes.Replace(got, []byte(`"origin_server_ts":1000000`), []byte(`"origin_server_ts":1000001`), 1)
			if err := VerifyEventSignature("1", "domain", "ed25519:1", k.PublicKey(), tampered); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("tampered event: err = %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestSpecReferenceHash(t *testing.T) {
	k := specKey(t)
	in := `{"room_id":"!x:domain","sender":"@a:domain","origin":"domain","origin_server_ts":1000000,"signatures":{},"hashes":{},"type":"X","content":{},"prev_events":[],"auth_events":[],"depth":3,"unsigned":{"age_ts":1000000}}`
	signed, err := SignEvent("4", "domain", k, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	id, err := EventID("4", signed)
	if err != nil {
		t.Fatal(err)
	}
	if id != "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc" {
		t.Fatalf("event ID = %s", id)
	}
}
