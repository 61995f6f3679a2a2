package importer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/masdb"
)

type fakeMAS map[string]*masdb.User

func (f fakeMAS) User(_ context.Context, localpart string) (*masdb.User, error) {
	if u, ok := f[localpart]; ok {
		return u, nil
	}
	return nil, fmt.Errorf("masdb: %w: %s", masdb.ErrNoUser, localpart)
}

type fakeSynapseKeys struct{}

func (fakeSynapseKeys) UserSessions(context.Context, string) (*Sessions, error) {
	return &Sessions{
		Tokens:       map[string]Token{"PHONE": {Token: "syt_stale_synapse_token"}},
		OneTimeKeys:  map[string]map[string]json.RawMessage{"PHONE": {"signed_curve25519:AAAAAQ": json.RawMessage(`{"key":"k"}`)}},
		FallbackKeys: map[string]int{"PHONE": 1},
	}, nil
}

func TestMASSessionsCarryCompatTokensAndNameOAuthDevices(t *testing.T) {
	mas := fakeMAS{"alice": {
		Localpart: "alice", PasswordHash: "$2b$12$fromMAS", PasswordVersion: 1,
		CompatTokens: map[string]masdb.CompatToken{"PHONE": {Token: "mct_phone", ExpiresAt: time.UnixMilli(1900000000000)}},
		OAuthDevices: []string{"LAPTOP", "NOTEXPORTED"},
	}}
	src := MASSessions{MAS: mas, ServerName: "hs.test", Synapse: fakeSynapseKeys{}}
	s, err := src.UserSessions(context.Background(), "@alice:hs.test")
	if err != nil {
		t.Fatal(err)
	}
	if s.PasswordHash != "$2b$12$fromMAS" || s.Tokens["PHONE"].Token != "mct_phone" || s.Tokens["PHONE"].ValidUntilMS != 1900000000000 {
		t.Fatalf("sessions %+v", s)
	}
	if len(s.OneTimeKeys["PHONE"]) != 1 || s.FallbackKeys["PHONE"] != 1 {
		t.Errorf("one-time keys from Synapse lost: %+v", s)
	}
	// A user MAS does not know (an appservice's) keeps Synapse's keys and gets no token.
	if s, err := src.UserSessions(context.Background(), "@bridge_bot:hs.test"); err != nil || len(s.Tokens) != 0 || s.PasswordHash != "" {
		t.Errorf("unknown to MAS: %+v, %v", s, err)
	}

	// The plan: MAS's hash replaces the export's empty one (Synapse holds none on a MAS
	// deployment), PHONE keeps its session, LAPTOP must sign in again.
	dev := func(id string) json.RawMessage { return json.RawMessage(`{"device_id":"` + id + `"}`) }
	u := &exportfmt.UserFile{UID: "@alice:hs.test", Devices: []json.RawMessage{dev("LAPTOP"), dev("PHONE")},
		E2E: exportfmt.E2E{DeviceKeys: map[string]json.RawMessage{}}}
	p, err := planUser(u, s, 1800000000000)
	if err != nil {
		t.Fatal(err)
	}
	if p.PasswordHash != "$2b$12$fromMAS" || p.PasswordKind != PasswordBcrypt {
		t.Errorf("password %q (%s)", p.PasswordHash, p.PasswordKind)
	}
	tokens := map[string]string{}
	for _, d := range p.Devices {
		tokens[d.ID] = d.AccessToken
	}
	if tokens["PHONE"] != "mct_phone" || tokens["LAPTOP"] != "" {
		t.Errorf("tokens %v", tokens)
	}
	if len(p.SignInAgain) != 1 || p.SignInAgain[0] != "LAPTOP" {
		t.Errorf("sign in again %v, want [LAPTOP]", p.SignInAgain)
	}
	if !strings.Contains(strings.Join(p.Notes, "\n"), "LAPTOP had an OAuth 2.0 session") {
		t.Errorf("notes %v", p.Notes)
	}
	im := &importer{report: &Report{Rows: Changes{}}}
	im.account(p, Changes{})
	if len(im.report.SignInAgain) != 1 || im.report.SignInAgain[0] != (DeviceRef{"@alice:hs.test", "LAPTOP"}) {
		t.Errorf("report %+v", im.report.SignInAgain)
	}
}
