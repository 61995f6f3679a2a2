package importer

import (
	"context"
	"encoding/json"

	"github.com/transition-matrix/transition-matrix/synapsedb"
)

// SynapseSessions reads a user's sessions from Synapse's database (PostgreSQL or SQLite).
type SynapseSessions struct{ DB *synapsedb.DB }

// UserSessions returns the newest token of each device, the unclaimed one-time keys and the
// number of fallback keys.
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
	return out, nil
}
