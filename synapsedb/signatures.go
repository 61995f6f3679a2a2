package synapsedb

import (
	"context"
	"database/sql"
)

// CrossSigningSignature is a signature one user made on another user's key: a row of
// e2e_cross_signing_signatures, such as bob's user-signing key on alice's master key once bob
// verified alice. /keys/query shows it only to the signer, so no export made as the key's owner has it.
type CrossSigningSignature struct {
	Signer    string // who signed (user_id)
	KeyID     string // the signing key, "ed25519:<signer's user-signing public key>"
	Target    string // what was signed: a device ID, or a cross-signing key's public key
	Signature string
}

// signaturesByOthersQuery reads the signatures active users made on userID's keys ($1); users'
// own signatures are in what /keys/query shows them already.
const signaturesByOthersQuery = `SELECT t.user_id, t.key_id, t.target_device_id, t.signature
	FROM e2e_cross_signing_signatures t
	JOIN users u ON u.name = t.user_id
	WHERE t.target_user_id = $1 AND t.user_id <> t.target_user_id AND u.deactivated = 0`

// SignaturesByOthers returns the signatures other (active) users made on userID's keys, ordered
// by target, signer and key ID.
func (db *DB) SignaturesByOthers(ctx context.Context, userID string) ([]CrossSigningSignature, error) {
	var out []CrossSigningSignature
	err := db.each(ctx, "e2e_cross_signing_signatures", signaturesByOthersQuery+db.orderBy("t.target_device_id", "t.user_id", "t.key_id"),
		[]any{userID}, func(rows *sql.Rows) error {
			var s CrossSigningSignature
			if err := rows.Scan(&s.Signer, &s.KeyID, &s.Target, &s.Signature); err != nil {
				return err
			}
			out = append(out, s)
			return nil
		})
	return out, err
}
