package importer

import (
	"context"
	"encoding/json"

	"github.com/transition-matrix/transition-matrix/synapsedb"
)

// SynapseSessions reads a user's sessions from Synapse's database (PostgreSQL or SQLite).
type SynapseSessions struct{ DB *synapsedb.DB }

// UserSessions returns the newest token of each device, the unclaimed one-time keys, the
// number of fallback keys and the signatures other users made on the user's keys.
func (s SynapseSessions) UserSessions(ctx context.Context, userID string) (*Sessions, error) {
	out := &Sessions{Tokens: map[string]Token{}, OneTimeKeys: map[string]map[string]json.RawMessage{}, FallbackKeys: map[string]int{}}
	tokens, err := s.DB.UserTokens(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, t := range tokens { // oldest first: the newest of a device wins
		out.Tokens[t.DeviceID] = Token{Token: t.Token, ValidUntilMS: t.ValidUntilMS}
	}
	otks, err := s.DB.UserOneTimeKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, k := range otks {
		m := out.OneTimeKeys[k.DeviceID]
		if m == nil {
			m = map[string]json.RawMessage{}
			out.OneTimeKeys[k.DeviceID] = m
		}
		m[k.Algorithm+":"+k.KeyID] = k.KeyJSON
	}
	fks, err := s.DB.UserFallbackKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, k := range fks {
		out.FallbackKeys[k.DeviceID]++
	}
	sigs, err := s.DB.SignaturesByOthers(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, g := range sigs {
		out.Signatures = append(out.Signatures, KeySignature{Signer: g.Signer, KeyID: g.KeyID, Target: g.Target, Signature: g.Signature})
	}
	return out, nil
}
