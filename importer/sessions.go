package importer

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/transition-matrix/transition-matrix/masdb"
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

// MASUsers is the part of MAS's database the import reads; *masdb.DB has it.
type MASUsers interface {
	User(ctx context.Context, localpart string) (*masdb.User, error)
}

var _ MASUsers = (*masdb.DB)(nil)

// MASSessions reads a user's password hash and compatibility sessions from the database of the
// Matrix Authentication Service, and one-time keys from Synapse's database when Synapse is set.
// Devices of unfinished OAuth 2.0 sessions are listed as having to sign in again.
type MASSessions struct {
	MAS        MASUsers
	ServerName string
	// Synapse, when set, gives the one-time and fallback keys (MAS has no keys); its tokens are
	// not used: MAS issues every token of a MAS deployment.
	Synapse SessionSource
}

// UserSessions returns the newest live compatibility token of each device, the newest password
// hash and the OAuth 2.0 devices of the user.
func (s MASSessions) UserSessions(ctx context.Context, userID string) (*Sessions, error) {
	out := &Sessions{Tokens: map[string]Token{}, OneTimeKeys: map[string]map[string]json.RawMessage{}, FallbackKeys: map[string]int{}}
	if s.Synapse != nil {
		syn, err := s.Synapse.UserSessions(ctx, userID)
		if err != nil {
			return nil, err
		}
		out.OneTimeKeys, out.FallbackKeys = syn.OneTimeKeys, syn.FallbackKeys
	}
	local, server, ok := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	if !ok || server != s.ServerName {
		return out, nil
	}
	u, err := s.MAS.User(ctx, local)
	if errors.Is(err, masdb.ErrNoUser) {
		return out, nil // an account Synapse has and MAS does not (an appservice's user)
	}
	if err != nil {
		return nil, err
	}
	out.PasswordHash = u.PasswordHash
	for dev, t := range u.CompatTokens {
		tok := Token{Token: t.Token}
		if !t.ExpiresAt.IsZero() {
			tok.ValidUntilMS = t.ExpiresAt.UnixMilli()
		}
		out.Tokens[dev] = tok
	}
	out.SignInAgain = append(out.SignInAgain, u.OAuthDevices...)
	return out, nil
}
