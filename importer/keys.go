package importer

import (
	"fmt"
	"time"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/signing"
)

// KeyValidity is how long the keys written to server_signingkeys stay valid, counted from the
// end of the export: long enough that Conduit never asks for its own keys again once Synapse is
// gone, and fixed by the export so that a second import writes the same bytes.
const KeyValidity = 10 * 365 * 24 * time.Hour

// KeysPlan is the server's identity in Conduit's terms: global["keypair"] from the signing key,
// and server_signingkeys[<server name>] with every current key in verify_keys and every old key
// (with expired_ts) in old_verify_keys, so events signed by rotated keys still verify.
type KeysPlan struct {
	ServerName string
	// KeyID is the key that signs ("ed25519:a_xxxx"); Seed its 32-byte Ed25519 seed — secret.
	KeyID string
	Seed  []byte
	// VerifyKeys and OldVerifyKeys map key IDs to unpadded base64 public keys.
	VerifyKeys    map[string]string
	OldVerifyKeys map[string]OldKey
	// ValidUntilTS is the validity of the stored set (ms).
	ValidUntilTS int64
}

// OldKey is a rotated-out key and when it expired (ms).
type OldKey struct {
	Key       string
	ExpiredTS int64
}

// Version is the part of KeyID after "ed25519:", the version Conduit stores with the keypair.
func (k *KeysPlan) Version() string { return signing.KeyID(k.KeyID).Version() }

// planKeys checks the configured identity against the keys Synapse published when exported and
// builds what Conduit stores: the configured signing key must be one Synapse published as
// current, with the same public key; old keys come from the configuration and the manifest.
func planKeys(id *signing.Identity, m *exportfmt.Manifest) (*KeysPlan, error) {
	if id == nil || len(id.Keys) == 0 {
		return nil, fmt.Errorf("the configuration has no signing key")
	}
	sk := id.SigningKey()
	pub, ok := m.PublicKeys[string(sk.ID)]
	switch {
	case !ok:
		return nil, fmt.Errorf("the configured signing key %s is not among the keys Synapse published at export time (%s): is it Synapse's key?", sk.ID, keyIDs(m.PublicKeys))
	case pub.ExpiredTS != nil:
		return nil, fmt.Errorf("the configured signing key %s is an old key of Synapse (expired at %d): configure the current one", sk.ID, *pub.ExpiredTS)
	case pub.Key != signing.EncodeBase64(sk.PublicKey()):
		return nil, fmt.Errorf("the configured signing key %s has another public key than the one Synapse published under that ID", sk.ID)
	}
	p := &KeysPlan{ServerName: id.ServerName, KeyID: string(sk.ID), Seed: sk.Seed, VerifyKeys: map[string]string{},
		OldVerifyKeys: map[string]OldKey{}, ValidUntilTS: m.FinishedAt.Add(KeyValidity).UnixMilli()}
	for _, k := range id.Keys {
		p.VerifyKeys[string(k.ID)] = signing.EncodeBase64(k.PublicKey())
	}
	for kid, k := range m.PublicKeys {
		if k.ExpiredTS == nil {
			if _, ok := p.VerifyKeys[kid]; !ok {
				p.VerifyKeys[kid] = k.Key
			}
			continue
		}
		p.OldVerifyKeys[kid] = OldKey{k.Key, *k.ExpiredTS}
	}
	for _, k := range id.OldKeys {
		key := signing.EncodeBase64(k.Public)
		if prev, ok := p.OldVerifyKeys[string(k.ID)]; ok && prev.Key != key {
			return nil, fmt.Errorf("old key %s: the configuration and the export disagree on its public key", k.ID)
		}
		p.OldVerifyKeys[string(k.ID)] = OldKey{key, k.ExpiredTS}
	}
	for kid := range p.OldVerifyKeys {
		delete(p.VerifyKeys, kid)
	}
	return p, nil
}

func keyIDs(m map[string]exportfmt.PublicKey) string {
	ids := sortedKeys(m)
	if len(ids) == 0 {
		return "none"
	}
	return fmt.Sprint(ids)
}
