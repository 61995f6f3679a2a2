package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrNoSignature means the object carries no signature by the asked server and key.
var ErrNoSignature = errors.New("no signature")

// ErrBadSignature means a signature is present but does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// SignJSON signs a JSON object as serverName with key, keeping any signatures and unsigned data it
// already has, and returns the canonical JSON of the signed object.
func SignJSON(serverName string, key Key, obj []byte) ([]byte, error) {
	m, err := decodeObject(obj)
	if err != nil {
		return nil, err
	}
	return signObject(serverName, key, m)
}

func signObject(serverName string, key Key, m map[string]any) ([]byte, error) {
	sigs, hasSigs := m["signatures"]
	unsigned, hasUnsigned := m["unsigned"]
	delete(m, "signatures")
	delete(m, "unsigned")
	payload, err := canonicalValue(m)
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(key.PrivateKey(), payload)

	all := map[string]any{}
	if hasSigs {
		existing, ok := sigs.(map[string]any)
		if !ok {
			return nil, errors.New("sign json: \"signatures\" is not an object")
		}
		all = existing
	}
	mine, _ := all[serverName].(map[string]any)
	if mine == nil {
		mine = map[string]any{}
	}
	mine[string(key.ID)] = EncodeBase64(sig)
	all[serverName] = mine
	m["signatures"] = all
	if hasUnsigned {
		m["unsigned"] = unsigned
	}
	return canonicalValue(m)
}

// VerifyJSON checks the signature of serverName's key keyID on a JSON object.
func VerifyJSON(serverName string, keyID KeyID, pub ed25519.PublicKey, obj []byte) error {
	m, err := decodeObject(obj)
	if err != nil {
		return err
	}
	return verifyObject(serverName, keyID, pub, m)
}

func verifyObject(serverName string, keyID KeyID, pub ed25519.PublicKey, m map[string]any) error {
	sigs, _ := m["signatures"].(map[string]any)
	byServer, _ := sigs[serverName].(map[string]any)
	sigStr, ok := byServer[string(keyID)].(string)
	if !ok {
		return fmt.Errorf("%w by %s with %s", ErrNoSignature, serverName, keyID)
	}
	sig, err := DecodeBase64(sigStr)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature by %s with %s is not a base64 Ed25519 signature", ErrBadSignature, serverName, keyID)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("verify json: public key for %s is %d bytes", keyID, len(pub))
	}
	payload, err := canonicalWithout(m, "signatures", "unsigned")
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, payload, sig) {
		return fmt.Errorf("%w: %s with %s", ErrBadSignature, serverName, keyID)
	}
	return nil
}

// SignatureKeyIDs lists the key IDs serverName signed obj with.
func SignatureKeyIDs(serverName string, obj []byte) ([]KeyID, error) {
	m, err := decodeObject(obj)
	if err != nil {
		return nil, err
	}
	sigs, _ := m["signatures"].(map[string]any)
	byServer, _ := sigs[serverName].(map[string]any)
	ids := make([]KeyID, 0, len(byServer))
	for id := range byServer {
		ids = append(ids, KeyID(id))
	}
	return ids, nil
}

// ContentHash is the unpadded base64 SHA-256 of an event without unsigned, signatures and hashes:
// the value of its hashes.sha256.
func ContentHash(event []byte) (string, error) {
	m, err := decodeObject(event)
	if err != nil {
		return "", err
	}
	payload, err := canonicalWithout(m, "unsigned", "signatures", "hashes")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(payload)
	return EncodeBase64(sum[:]), nil
}

// canonicalWithout encodes m without the named top-level keys, leaving m as it was.
func canonicalWithout(m map[string]any, drop ...string) ([]byte, error) {
	saved := make(map[string]any, len(drop))
	for _, k := range drop {
		if v, ok := m[k]; ok {
			saved[k] = v
			delete(m, k)
		}
	}
	out, err := canonicalValue(m)
	for k, v := range saved {
		m[k] = v
	}
	return out, err
}

func decodeObject(obj []byte) (map[string]any, error) {
	v, err := decodeJSON(obj)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("json: want an object")
	}
	return m, nil
}

func canonicalValue(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := encodeCanonical(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
