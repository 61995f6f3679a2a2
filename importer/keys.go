package importer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/transition-matrix/transition-matrix/export"
	"github.com/transition-matrix/transition-matrix/signing"
)

// KeyValidity is how long the keys written to server_signingkeys stay valid, counted from the
// end of the export: long enough that Conduit never asks for its own keys again once Synapse is
// gone, and fixed by the export so that a second import writes the same bytes.
const KeyValidity = 10 * 365 * 24 * time.Hour

// KeysPlan is the server's identity in Conduit's terms.
type KeysPlan struct {
	// Keypair is global["keypair"]: the signing key's version, 0xFF, its PKCS#8 DER — secret.
	Keypair []byte
	// ServerSigningKeys is server_signingkeys[<server name>]: every current key in verify_keys,
	// every old key (with expired_ts) in old_verify_keys, so events signed by rotated keys verify.
	ServerSigningKeys json.RawMessage
	// KeyID is the key that signs; OldKeyIDs the rotated ones carried.
	KeyID     string
	OldKeyIDs []string
}

// planKeys checks the configured identity against the keys Synapse published when exported and
// builds what Conduit stores: the configured signing key must be one Synapse published as
// current, with the same public key; old keys come from the configuration and the manifest.
func planKeys(id *signing.Identity, m *export.Manifest) (*KeysPlan, error) {
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
	type verifyKey struct {
		Key string `json:"key"`
	}
	type oldKey struct {
		Key       string `json:"key"`
		ExpiredTS int64  `json:"expired_ts"`
	}
	doc := struct {
		ServerName    string               `json:"server_name"`
		VerifyKeys    map[string]verifyKey `json:"verify_keys"`
		OldVerifyKeys map[string]oldKey    `json:"old_verify_keys"`
		Signatures    map[string]any       `json:"signatures"`
		ValidUntilTS  int64                `json:"valid_until_ts"`
	}{ServerName: id.ServerName, VerifyKeys: map[string]verifyKey{}, OldVerifyKeys: map[string]oldKey{}, Signatures: map[string]any{},
		ValidUntilTS: m.FinishedAt.Add(KeyValidity).UnixMilli()}
	for _, k := range id.Keys {
		doc.VerifyKeys[string(k.ID)] = verifyKey{signing.EncodeBase64(k.PublicKey())}
	}
	for kid, k := range m.PublicKeys {
		if k.ExpiredTS == nil {
			if _, ok := doc.VerifyKeys[kid]; !ok {
				doc.VerifyKeys[kid] = verifyKey{k.Key}
			}
			continue
		}
		doc.OldVerifyKeys[kid] = oldKey{k.Key, *k.ExpiredTS}
	}
	for _, k := range id.OldKeys {
		key := signing.EncodeBase64(k.Public)
		if prev, ok := doc.OldVerifyKeys[string(k.ID)]; ok && prev.Key != key {
			return nil, fmt.Errorf("old key %s: the configuration and the export disagree on its public key", k.ID)
		}
		doc.OldVerifyKeys[string(k.ID)] = oldKey{key, k.ExpiredTS}
	}
	for kid := range doc.OldVerifyKeys {
		delete(doc.VerifyKeys, kid)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	p := &KeysPlan{Keypair: sk.ConduitKeypair(), ServerSigningKeys: bytes.TrimSuffix(buf.Bytes(), []byte("\n")), KeyID: string(sk.ID)}
	p.OldKeyIDs = sortedKeys(doc.OldVerifyKeys)
	return p, nil
}

func keyIDs(m map[string]export.PublicKey) string {
	ids := sortedKeys(m)
	if len(ids) == 0 {
		return "none"
	}
	return fmt.Sprint(ids)
}
