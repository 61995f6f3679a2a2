package preflight

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// rcFederationAdvice is what to tell the operator about Synapse's federation rate limit.
const rcFederationAdvice = "the shim's requests all count against one origin, so raise rc_federation in homeserver.yaml for the migration (e.g. window_size 1000, sleep_limit 1000, reject_limit 10000, concurrent 100) and restart Synapse"

// httpError returns Synapse's answer inside err, if it answered at all.
func httpError(err error) (*synapseclient.Error, bool) {
	var e *synapseclient.Error
	ok := errors.As(err, &e)
	return e, ok
}

// checkAccess asks the admin server_version endpoint: it proves Synapse answers, and whether the
// token is a server admin's.
// https://element-hq.github.io/synapse/latest/admin_api/version_api.html
func (c *Checker) checkAccess(ctx context.Context, st *state) error {
	info, err := c.Admin.ServerVersion(ctx)
	if err == nil {
		st.admin = true
		if v, perr := synapseclient.ParseVersion(info.ServerVersion); perr == nil {
			st.version = v
			st.r.SynapseVersion = info.ServerVersion
		}
		if id, err := c.Admin.AdminUserID(ctx); err == nil {
			st.r.AdminUser = id
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	he, answered := httpError(err)
	if !answered {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.SynapseURL, err)
	}
	who := "synapse.admin_token"
	if id, err := c.Admin.AdminUserID(ctx); err == nil {
		who = "synapse.admin_token (a token of " + id + ")"
		st.r.AdminUser = id
	}
	switch he.Status {
	case 401:
		st.r.add(Blocker, CodeNoAdminAccess, "synapse.admin_token", "Synapse refuses synapse.admin_token (%s: %s): set it to a valid access token of a server admin", he.ErrCode, he.Message)
	case 403:
		st.r.add(Blocker, CodeNoAdminAccess, "synapse.admin_token", "%s is not a server admin's (%s): the export and this check need the admin API; make the user an admin or use another token", who, he.Message)
	default:
		const endpoint = "GET /_synapse/admin/v1/server_version"
		st.r.add(Blocker, CodeNoAdminAccess, endpoint, "the admin API answers %s with HTTP %d %s %s: it must be reachable on synapse.url (the main process's client listener, not a worker)", endpoint, he.Status, he.ErrCode, he.Message)
	}
	return nil
}

// endpoints are the admin API endpoints the migration uses, with the Synapse release that added them.
var endpoints = []Endpoint{
	{Name: "list users", Path: "GET /_synapse/admin/v2/users", Since: "1.7.0", Required: true, UsedFor: "check, export"},
	{Name: "rooms with versions", Path: "GET /_synapse/admin/v1/rooms", Since: "1.13.0", Required: true, UsedFor: "check, export"},
	{Name: "login as a user", Path: "POST /_synapse/admin/v1/users/{userId}/login", Since: "1.24.0", Required: true, UsedFor: "export (per-user data)"},
	{Name: "room state", Path: "GET /_synapse/admin/v1/rooms/{roomId}/state", Since: "1.27.0", Required: true, UsedFor: "export (rooms with no local member)"},
	{Name: "forward extremities", Path: "GET /_synapse/admin/v1/rooms/{roomId}/forward_extremities", Since: "1.27.0", Required: true, UsedFor: "export, archive"},
	{Name: "account data", Path: "GET /_synapse/admin/v1/users/{userId}/accountdata", Since: "1.50.0", Required: true, UsedFor: "export"},
	{Name: "room messages (raw)", Path: "GET /_synapse/admin/v1/rooms/{roomId}/messages", Since: synapseclient.VersionAdminRoomMessages.String(), UsedFor: "history without the federation visibility filter"},
	{Name: "fetch_event", Path: "GET /_synapse/admin/v1/fetch_event/{eventId}", Since: synapseclient.VersionFetchEvent.String(), UsedFor: "single events without the federation visibility filter"},
}

// versionSelfKeyLocal is the first Synapse that verifies requests signed as itself with its own
// keys, without asking key servers.
var versionSelfKeyLocal = synapseclient.Version{Major: 1, Minor: 47}

// checkVersion finds Synapse's version (the federation /version when the admin API refused) and
// lists which admin endpoints it offers.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1version
func (c *Checker) checkVersion(ctx context.Context, st *state) error {
	source := "admin API"
	if st.version.IsZero() {
		v, err := c.Federation.Version(ctx)
		if err != nil {
			return fmt.Errorf("finding Synapse's version: %w", err)
		}
		pv, err := synapseclient.ParseVersion(v.Server.Version)
		if err != nil {
			return fmt.Errorf("finding Synapse's version: federation /version names %s %q: %w", v.Server.Name, v.Server.Version, err)
		}
		if v.Server.Name != "" && !strings.EqualFold(v.Server.Name, "Synapse") {
			st.r.add(Warning, CodeSynapseVersion, v.Server.Name, "the server at %s says it is %s %s, not Synapse", c.SynapseURL, v.Server.Name, v.Server.Version)
		}
		st.version, st.r.SynapseVersion, source = pv, v.Server.Version, "federation /version"
	}
	st.r.add(Info, CodeSynapseVersion, st.r.SynapseVersion, "Synapse %s (from the %s)", st.r.SynapseVersion, source)
	for _, e := range endpoints {
		need, _ := synapseclient.ParseVersion(e.Since)
		e.Available = st.version.AtLeast(need)
		st.r.Endpoints = append(st.r.Endpoints, e)
		if e.Available {
			continue
		}
		if e.Required {
			st.r.add(Blocker, CodeAdminEndpointMissing, e.Path, "Synapse %s lacks %s (%s, from %s), which the %s needs: upgrade Synapse first", st.r.SynapseVersion, e.Name, e.Path, e.Since, e.UsedFor)
		} else {
			st.r.add(Info, CodeAdminEndpointMissing, e.Path, "Synapse %s lacks %s (%s, from %s), used for %s; the migration works without it", st.r.SynapseVersion, e.Name, e.Path, e.Since, e.UsedFor)
		}
	}
	return nil
}

// checkSigningKey compares the configured signing key with the key document Synapse publishes.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixkeyv2server
func (c *Checker) checkSigningKey(ctx context.Context, st *state) error {
	doc, err := c.Federation.ServerKeys(ctx)
	if err != nil {
		return fmt.Errorf("fetching /_matrix/key/v2/server: %w", err)
	}
	st.keys = doc
	id := c.Identity
	if doc.ServerName != id.ServerName {
		st.r.add(Blocker, CodeServerNameMismatch, doc.ServerName, "Synapse publishes keys for %q, but the configured server name is %q: synapse.url points at another server, or server_name is wrong", doc.ServerName, id.ServerName)
		return nil
	}
	key := id.SigningKey()
	pub := signing.EncodeBase64(key.PublicKey())
	published := make([]string, 0, len(doc.VerifyKeys))
	for kid := range doc.VerifyKeys {
		published = append(published, string(kid))
	}
	slices.Sort(published)
	vk, current := doc.VerifyKeys[key.ID]
	old, retired := doc.OldVerifyKeys[key.ID]
	switch {
	case current && vk.Key == pub:
		if err := signing.VerifyJSON(id.ServerName, key.ID, key.PublicKey(), doc.Raw); err != nil {
			st.r.add(Blocker, CodeSigningKeyMismatch, string(key.ID), "Synapse publishes the configured key %s, but its key document does not carry a valid signature by it (%v): something between the shim and Synapse alters it", key.ID, err)
		} else {
			st.r.add(Info, CodeSigningKeyOK, string(key.ID), "the configured signing key %s is the one Synapse publishes", key.ID)
		}
	case current:
		st.r.add(Blocker, CodeSigningKeyMismatch, string(key.ID), "Synapse publishes %s with public key %s, but the configured key under that ID has public key %s: signing_key_path (or synapse_config) must be Synapse's own key file", key.ID, vk.Key, pub)
	case retired && old.Key == pub:
		st.r.add(Blocker, CodeSigningKeyMismatch, string(key.ID), "the configured key %s is one Synapse retired (expired %s); Synapse now signs with %s: use Synapse's current key file", key.ID, time.UnixMilli(old.ExpiredTS).UTC().Format(time.RFC3339), strings.Join(published, ", "))
	default:
		st.r.add(Blocker, CodeSigningKeyMismatch, string(key.ID), "Synapse publishes %s, not the configured key %s: signing_key_path (or synapse_config) must be Synapse's own key file", strings.Join(published, ", "), key.ID)
	}
	c.checkPublishedKeysConfigured(st, doc)
	return nil
}

// checkPublishedKeysConfigured warns about keys Synapse publishes that the configuration lacks:
// events signed by them would not verify on Conduit unless their public keys travel too.
func (c *Checker) checkPublishedKeysConfigured(st *state, doc *synapseclient.ServerKeys) {
	id := c.Identity
	have := map[signing.KeyID]string{}
	for _, k := range id.Keys {
		have[k.ID] = signing.EncodeBase64(k.PublicKey())
	}
	for _, k := range id.OldKeys {
		have[k.ID] = signing.EncodeBase64(k.Public)
	}
	var ids []signing.KeyID
	for kid := range doc.VerifyKeys {
		ids = append(ids, kid)
	}
	for kid := range doc.OldVerifyKeys {
		if _, dup := doc.VerifyKeys[kid]; !dup {
			ids = append(ids, kid)
		}
	}
	slices.Sort(ids)
	for _, kid := range ids {
		if kid == id.SigningKey().ID {
			continue
		}
		want, isOld := doc.VerifyKeys[kid].Key, false
		if v, ok := doc.OldVerifyKeys[kid]; ok {
			want, isOld = v.Key, true
		}
		if have[kid] == want {
			continue
		}
		kind := "current key"
		if isOld {
			kind = "old key"
		}
		st.r.add(Warning, CodePublishedKeyNotInConfig, string(kid), "Synapse publishes the %s %s, which the configuration lacks: events it signed will not verify on Conduit; point synapse_config at homeserver.yaml so its old_signing_keys come along", kind, kid)
	}
}

// checkSelfFederation sends one federation request signed as Synapse itself (a profile query,
// the cheapest authenticated read) and sorts Synapse's answer into accepted, refused or limited.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1queryprofile
func (c *Checker) checkSelfFederation(ctx context.Context, st *state) error {
	user := st.r.AdminUser
	if user == "" {
		user = "@transition-matrix-preflight:" + c.Identity.ServerName
	}
	const endpoint = "GET /_matrix/federation/v1/query/profile"
	_, err := c.Federation.QueryProfile(ctx, user, "displayname")
	he, answered := httpError(err)
	// Synapse authenticates a request before anything else, and answers 401 (signature) or 403
	// "Federation denied" (federation_domain_whitelist) when that fails; a 404 for the profile or
	// another 403 (e.g. allow_profile_lookup_over_federation: false) come after the signature passed.
	accepted := err == nil || answered && ((he.Status == 404 && he.ErrCode == "M_NOT_FOUND") ||
		(he.Status == 403 && !strings.HasPrefix(he.Message, "Federation denied")))
	switch {
	case accepted:
		st.r.add(Info, CodeFederationSelfAccepted, endpoint, "Synapse accepts federation requests signed as %s with %s (%s); %s", c.Identity.ServerName, c.Identity.SigningKey().ID, endpoint, rcFederationAdvice)
	case errors.Is(err, synapseclient.ErrRateLimited):
		st.r.add(Warning, CodeFederationRateLimited, endpoint, "Synapse rate-limits federation requests from %s already (%s: HTTP 429 after retries): %s", c.Identity.ServerName, endpoint, rcFederationAdvice)
	case !answered || he.Status >= 500:
		return fmt.Errorf("sending a federation request signed as %s: %w", c.Identity.ServerName, err)
	case he.Status == 403:
		st.r.add(Blocker, CodeFederationSelfRefused, endpoint, "Synapse refuses federation requests from its own name (%s: %s): federation_domain_whitelist in homeserver.yaml must list %s during the migration", endpoint, he.Message, c.Identity.ServerName)
	case he.Status == 404 && he.ErrCode == "M_UNRECOGNIZED":
		st.r.add(Blocker, CodeFederationSelfRefused, endpoint, "no federation API answers %s at the federation URL (HTTP 404 M_UNRECOGNIZED): set synapse.federation_url to a listener with the federation resource", endpoint)
	default:
		hint := ""
		if !st.version.IsZero() && !st.version.AtLeast(versionSelfKeyLocal) {
			hint = fmt.Sprintf("; Synapse %s predates 1.47, which first verifies its own signatures locally: upgrade Synapse", st.r.SynapseVersion)
		} else if he.Status == 401 {
			hint = "; the configured signing key is probably not Synapse's current key"
		}
		st.r.add(Blocker, CodeFederationSelfRefused, endpoint, "Synapse refuses a federation request signed as %s with %s (%s): HTTP %d %s %s%s", c.Identity.ServerName, c.Identity.SigningKey().ID, endpoint, he.Status, he.ErrCode, he.Message, hint)
	}
	return nil
}
