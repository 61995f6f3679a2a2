package preflight

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// AuthAPI is how the checks learn who handles Synapse's logins; *synapseclient.AdminClient has it.
// An Admin without it skips the questions to the API and relies on Checker.MAS.
type AuthAPI interface {
	ProbeLoginAs(ctx context.Context) (*synapseclient.LoginAs, error)
	AuthIssuer(ctx context.Context) (string, error)
}

var _ AuthAPI = (*synapseclient.AdminClient)(nil)

// MAS is homeserver.yaml's hand-over of logins to the Matrix Authentication Service.
type MAS struct {
	// Key is the block that enables it: matrix_authentication_service or experimental_features.msc3861.
	Key      string
	Endpoint string
}

// masCarried says what a migration of a MAS deployment carries and what it does not.
const masCarried = "shim export reads what only the client API gave (E2EE device and cross-signing keys, key backups, push rules, tags) from Synapse's database with -synapse-db; " +
	"shim import conduit -mas-db DSN carries password hashes and compatibility sessions (compat_sessions, compat_access_tokens) from MAS's database, so those devices stay logged in; " +
	"OAuth 2.0 sessions cannot be carried (their tokens expire within minutes and Conduit has no OAuth 2.0 server): the import report names those users and devices as \"must sign in again\"; " +
	"MAS's own data (upstream identity provider links, consents, client registrations) stays behind"

// checkAuth finds out whether Synapse hands its logins to MAS (from homeserver.yaml and from the
// API) and whether login-as works, which decides how the export reads per-user data.
func (c *Checker) checkAuth(ctx context.Context, st *state) error {
	api, ok := c.Admin.(AuthAPI)
	var evidence []string
	if c.MAS != nil {
		e := "homeserver.yaml enables " + c.MAS.Key
		if c.MAS.Endpoint != "" {
			e += " (" + c.MAS.Endpoint + ")"
		}
		evidence = append(evidence, e)
	}
	var refusal *synapseclient.Error
	if ok {
		issuer, err := api.AuthIssuer(ctx)
		if err != nil {
			return fmt.Errorf("asking which server handles logins (auth_metadata): %w", err)
		}
		if issuer != "" {
			evidence = append(evidence, "the client API names "+issuer+" as its OAuth 2.0 issuer")
		}
		if st.admin {
			la, err := api.ProbeLoginAs(ctx)
			if err != nil {
				return fmt.Errorf("probing login-as: %w", err)
			}
			if !la.Available {
				refusal = la.Refusal
				for i := range st.r.Endpoints {
					if strings.Contains(st.r.Endpoints[i].Path, "/login") {
						st.r.Endpoints[i].Available = false
					}
				}
			}
		}
	}
	refused := ""
	if refusal != nil {
		refused = fmt.Sprintf("the admin login-as endpoint answers HTTP %d %s", refusal.Status, refusal.ErrCode)
	}
	switch {
	case len(evidence) > 0:
		st.mas = true
		if refused != "" {
			evidence = append(evidence, refused)
		}
		st.r.add(Warning, CodeMASDeployment, "", "Synapse hands its logins to the Matrix Authentication Service (%s): access tokens and password hashes live in MAS's PostgreSQL database, and login-as, registration and password reset are gone from the admin API. %s",
			strings.Join(evidence, "; "), masCarried)
	case refused != "":
		st.r.add(Warning, CodeLoginAsRefused, "POST /_synapse/admin/v1/users/{userId}/login", "%s, so shim export cannot read per-user client data through it: run shim export with -synapse-db (Synapse's database, read-only) to read E2EE keys, key backups, push rules and tags from there instead",
			refused)
	}
	return nil
}

// compromisedKeys are public signing keys whose private halves are public knowledge, by base64
// public key. l/O9h… is the Element Server Suite key (GHSA-qwcj-h6m8-vp6q), which Conduit ≥ 0.10.12
// lists in its default ignored_keys.
var compromisedKeys = map[string]string{
	"l/O9hxMVKB6Lg+3Hqf0FQQZhVESQcMzbPN1Cz2nM3og": "the Element Server Suite signing key published with ess-helm (GHSA-qwcj-h6m8-vp6q)",
}

// rotateAdvice says how to leave a compromised key behind.
const rotateAdvice = "rotate before the migration: generate a new key (python -m synapse._scripts.generate_signing_key -o NEW.key, or generate_signing_key), make it signing_key_path, " +
	"move the compromised key to old_signing_keys with expired_ts set to now (milliseconds), restart Synapse, then point the shim's configuration at the new key. " +
	"Conduit ≥ 0.10.12 ignores the compromised key by default (ignored_keys in [global] lists it), so events it signed do not verify there: " +
	"keep ignored_keys as it is and accept that those events are refused, or set ignored_keys = [] for the backfill only and restore the default afterwards"

// checkCompromisedKey is a blocker when the configured current or old key, or a key Synapse
// publishes, is a key whose private half is known.
func (c *Checker) checkCompromisedKey(_ context.Context, st *state) error {
	found := map[string]string{} // key ID → where
	note := func(id signing.KeyID, pub, where string) {
		if _, bad := compromisedKeys[pub]; bad {
			if found[string(id)+" "+pub] == "" {
				found[string(id)+" "+pub] = where
			}
		}
	}
	for _, k := range c.Identity.Keys {
		note(k.ID, signing.EncodeBase64(k.PublicKey()), "the configured signing key")
	}
	for _, k := range c.Identity.OldKeys {
		note(k.ID, signing.EncodeBase64(k.Public), "an old key in old_signing_keys")
	}
	if st.keys != nil {
		for id, k := range st.keys.VerifyKeys {
			note(id, k.Key, "a key Synapse publishes as current")
		}
		for id, k := range st.keys.OldVerifyKeys {
			note(id, k.Key, "an old key Synapse publishes (expired "+time.UnixMilli(k.ExpiredTS).UTC().Format(time.RFC3339)+")")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(found)) {
		id, pub, _ := strings.Cut(k, " ")
		st.r.add(Blocker, CodeCompromisedKey, id, "%s %s (public key %s) is %s: anyone can sign events and requests as %s with it; %s",
			found[k], id, pub, compromisedKeys[pub], c.Identity.ServerName, rotateAdvice)
	}
	return nil
}
