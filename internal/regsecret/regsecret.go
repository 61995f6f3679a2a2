// Package regsecret computes the MAC of shared-secret registration (POST /_synapse/admin/v1/register),
// which Synapse and Dendrite both accept.
package regsecret

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
)

// MAC is the hex HMAC-SHA1, keyed by the shared secret, over nonce NUL user NUL password NUL
// "admin" or "notadmin".
func MAC(secret, nonce, user, password string, admin bool) string {
	kind := "notadmin"
	if admin {
		kind = "admin"
	}
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(nonce + "\x00" + user + "\x00" + password + "\x00" + kind))
	return hex.EncodeToString(m.Sum(nil))
}
