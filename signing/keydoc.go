package signing

import (
	"encoding/json"
	"errors"
	"time"
)

// DefaultKeyValidity is how long a published key document stays valid, as Synapse's default
// key_refresh_interval.
const DefaultKeyValidity = 24 * time.Hour

type verifyKeyJSON struct {
	Key string `json:"key"`
}

type oldVerifyKeyJSON struct {
	Key       string `json:"key"`
	ExpiredTS int64  `json:"expired_ts"`
}

type keyDocJSON struct {
	ServerName    string                     `json:"server_name"`
	ValidUntilTS  int64                      `json:"valid_until_ts"`
	VerifyKeys    map[KeyID]verifyKeyJSON    `json:"verify_keys"`
	OldVerifyKeys map[KeyID]oldVerifyKeyJSON `json:"old_verify_keys"`
}

func (id *Identity) keyDoc(validUntil time.Time) keyDocJSON {
	doc := keyDocJSON{
		ServerName:    id.ServerName,
		ValidUntilTS:  validUntil.UnixMilli(),
		VerifyKeys:    map[KeyID]verifyKeyJSON{},
		OldVerifyKeys: map[KeyID]oldVerifyKeyJSON{},
	}
	for _, k := range id.Keys {
		doc.VerifyKeys[k.ID] = verifyKeyJSON{Key: EncodeBase64(k.PublicKey())}
	}
	for _, k := range id.OldKeys {
		doc.OldVerifyKeys[k.ID] = oldVerifyKeyJSON{Key: EncodeBase64(k.Public), ExpiredTS: k.ExpiredTS}
	}
	return doc
}

// KeyDocument is the /_matrix/key/v2/server response: every current key in verify_keys, the old
// ones in old_verify_keys, signed by every current key, in canonical JSON.
func (id *Identity) KeyDocument(validUntil time.Time) ([]byte, error) {
	if len(id.Keys) == 0 {
		return nil, errors.New("key document: no signing key")
	}
	raw, err := json.Marshal(id.keyDoc(validUntil))
	if err != nil {
		return nil, err
	}
	m, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	for _, k := range id.Keys {
		signed, err := signObject(id.ServerName, k, m)
		if err != nil {
			return nil, err
		}
		if m, err = decodeObject(signed); err != nil {
			return nil, err
		}
	}
	return canonicalValue(m)
}

// pkcs8Ed25519Prefix is the DER of a PKCS#8 v1 PrivateKeyInfo for Ed25519 (RFC 8410) up to the seed.
var pkcs8Ed25519Prefix = []byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}

// PKCS8 encodes the key's seed as a PKCS#8 v1 DER PrivateKeyInfo.
func (k Key) PKCS8() []byte {
	return append(append([]byte{}, pkcs8Ed25519Prefix...), k.Seed...)
}

// ConduitKeypair is the value of Conduit's global["keypair"]: the key version, 0xFF, the PKCS#8 DER.
func (k Key) ConduitKeypair() []byte {
	out := append([]byte(k.ID.Version()), 0xFF)
	return append(out, k.PKCS8()...)
}

// ConduitServerSigningKeys is the value of Conduit's server_signingkeys[<server name>]: the current
// keys in verify_keys and the old ones in old_verify_keys, so that events signed with any Synapse key
// still verify once Conduit holds the name (Conduit stops using its built-in key once this row exists).
func (id *Identity) ConduitServerSigningKeys(validUntil time.Time) ([]byte, error) {
	if len(id.Keys) == 0 {
		return nil, errors.New("conduit keys: no signing key")
	}
	raw, err := json.Marshal(id.keyDoc(validUntil))
	if err != nil {
		return nil, err
	}
	m, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	m["signatures"] = map[string]any{} // Conduit re-parses the row as ServerSigningKeys, which requires it
	return canonicalValue(m)
}
