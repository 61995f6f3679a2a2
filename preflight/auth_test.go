package preflight

import (
	"context"
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// authAdmin is a fakeAdmin that also answers the login-as probe and auth_metadata.
type authAdmin struct {
	fakeAdmin
	loginAs *synapseclient.LoginAs
	issuer  string
}

func (a *authAdmin) ProbeLoginAs(context.Context) (*synapseclient.LoginAs, error) {
	return a.loginAs, nil
}
func (a *authAdmin) AuthIssuer(context.Context) (string, error) { return a.issuer, nil }

const essKey = "l/O9hxMVKB6Lg+3Hqf0FQQZhVESQcMzbPN1Cz2nM3og"

func findingOf(r *Report, code string) *Finding {
	for i := range r.Findings {
		if r.Findings[i].Code == code {
			return &r.Findings[i]
		}
	}
	return nil
}

func TestMASDeploymentFromConfigAndAPI(t *testing.T) {
	unrecognized := &synapseclient.Error{Status: 404, ErrCode: "M_UNRECOGNIZED", Message: "Unrecognized request"}
	for _, tc := range []struct {
		name    string
		mas     *MAS
		admin   *authAdmin
		code    string
		mention []string
	}{
		{"homeserver.yaml and the API agree", &MAS{Key: "matrix_authentication_service", Endpoint: "http://mas:8080/"},
			&authAdmin{fakeAdmin: fakeAdmin{version: "1.163.2", users: []synapseclient.UserSummary{{Name: "@alice:example.org"}}}, loginAs: &synapseclient.LoginAs{Refusal: unrecognized}, issuer: "https://auth.example/"},
			CodeMASDeployment, []string{"matrix_authentication_service (http://mas:8080/)", "https://auth.example/", "HTTP 404 M_UNRECOGNIZED", "-synapse-db", "-mas-db", "must sign in again"}},
		{"only the API tells (no synapse_config)", nil,
			&authAdmin{fakeAdmin: fakeAdmin{version: "1.120.2", users: []synapseclient.UserSummary{{Name: "@alice:example.org"}}}, loginAs: &synapseclient.LoginAs{Refusal: unrecognized}, issuer: "https://auth.example/"},
			CodeMASDeployment, []string{"https://auth.example/", "-mas-db"}},
		{"login-as refused by a proxy, no MAS", nil,
			&authAdmin{fakeAdmin: fakeAdmin{version: "1.163.2"}, loginAs: &synapseclient.LoginAs{Refusal: &synapseclient.Error{Status: 403, ErrCode: "M_FORBIDDEN"}}},
			CodeLoginAsRefused, []string{"HTTP 403 M_FORBIDDEN", "run shim export with -synapse-db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeChecker(&tc.admin.fakeAdmin)
			c.Admin = tc.admin
			c.MAS = tc.mas
			r, err := c.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			f := findingOf(r, tc.code)
			if f == nil {
				t.Fatalf("no %s finding: %+v", tc.code, r.Findings)
			}
			if f.Severity != Warning {
				t.Errorf("severity %s, want warning (the export has a path without login-as)", f.Severity)
			}
			for _, m := range tc.mention {
				if !strings.Contains(f.Message, m) {
					t.Errorf("message lacks %q: %s", m, f.Message)
				}
			}
			if tc.code == CodeMASDeployment {
				if f := findingOf(r, CodeUsersWithoutPassword); f == nil || !strings.Contains(f.Message, "-mas-db carries them") {
					t.Errorf("users without a password on a MAS deployment: %+v", f)
				}
			}
			for _, e := range r.Endpoints {
				if strings.HasSuffix(e.Path, "/login") && e.Available {
					t.Errorf("login-as listed as available: %+v", e)
				}
			}
		})
	}
	// Login-as offered and no MAS anywhere: no finding.
	a := &authAdmin{fakeAdmin: fakeAdmin{version: "1.163.2"}, loginAs: &synapseclient.LoginAs{Available: true}}
	c := newFakeChecker(&a.fakeAdmin)
	c.Admin = a
	r, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if f := findingOf(r, CodeMASDeployment); f != nil {
		t.Errorf("MAS finding on a plain Synapse: %s", f.Message)
	}
	if f := findingOf(r, CodeLoginAsRefused); f != nil {
		t.Errorf("login-as finding though it is offered: %s", f.Message)
	}
}

func TestCompromisedESSKeyIsABlocker(t *testing.T) {
	essPub, err := signing.DecodeBase64(essKey)
	if err != nil || len(essPub) != ed25519.PublicKeySize {
		t.Fatalf("ESS key does not decode: %v", err)
	}
	// As an old key in old_signing_keys (and so in the published document too).
	c := newFakeChecker(&fakeAdmin{version: "1.163.2"})
	c.Identity.OldKeys = []signing.OldKey{{ID: "ed25519:0", Public: essPub, ExpiredTS: 1750000000000}}
	c.Federation = &fakeFederation{id: c.Identity}
	r, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitStatus != 1 {
		t.Errorf("exit status %d, want 1", r.ExitStatus)
	}
	var blockers []Finding
	for _, f := range r.Findings {
		if f.Code == CodeCompromisedKey {
			blockers = append(blockers, f)
		}
	}
	if len(blockers) != 1 || blockers[0].Severity != Blocker || blockers[0].Subject != "ed25519:0" {
		t.Fatalf("want one blocker for ed25519:0, got %+v", blockers)
	}
	for _, m := range []string{essKey, "old_signing_keys", "generate_signing_key", "expired_ts", "ignored_keys", "Conduit ≥ 0.10.12"} {
		if !strings.Contains(blockers[0].Message, m) {
			t.Errorf("message lacks %q: %s", m, blockers[0].Message)
		}
	}

	// As the current key: no seed of the real key is known here, so stand one of ours in for it.
	c = newFakeChecker(&fakeAdmin{version: "1.163.2"})
	pub := signing.EncodeBase64(c.Identity.SigningKey().PublicKey())
	compromisedKeys[pub] = "a test stand-in"
	t.Cleanup(func() { delete(compromisedKeys, pub) })
	r, err = c.Run(context.Background())
	delete(compromisedKeys, pub)
	if err != nil {
		t.Fatal(err)
	}
	f := findingOf(r, CodeCompromisedKey)
	if r.ExitStatus != 1 || f == nil || !strings.Contains(f.Message, "the configured signing key ed25519:a_Test") {
		t.Fatalf("current key: exit %d, finding %+v", r.ExitStatus, f)
	}

	// Synapse publishes the key though the configuration lacks it.
	c = newFakeChecker(&fakeAdmin{version: "1.163.2"})
	published := &signing.Identity{ServerName: c.Identity.ServerName, Keys: c.Identity.Keys,
		OldKeys: []signing.OldKey{{ID: "ed25519:ess", Public: essPub, ExpiredTS: 1750000000000}}}
	c.Federation = &fakeFederation{id: published}
	r, err = c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if f := findingOf(r, CodeCompromisedKey); r.ExitStatus != 1 || f == nil || !strings.Contains(f.Message, "an old key Synapse publishes") {
		t.Fatalf("published key: exit %d, finding %+v", r.ExitStatus, f)
	}

	// No compromised key: no finding.
	c = newFakeChecker(&fakeAdmin{version: "1.163.2"})
	if r, err = c.Run(context.Background()); err != nil || findingOf(r, CodeCompromisedKey) != nil {
		t.Fatalf("clean key flagged: %v %+v", err, r.Findings)
	}
}
