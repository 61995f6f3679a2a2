package synapseclient

import (
	"context"
	"errors"
	"fmt"
)

// LoginAs is whether Synapse's admin login-as endpoint can be used.
type LoginAs struct {
	Available bool
	// Refusal is Synapse's answer when it is not available (404 M_UNRECOGNIZED on a Synapse that
	// hands logins to the Matrix Authentication Service, 403 from a proxy in front of it).
	Refusal *Error
}

// ProbeLoginAs asks login-as for the admin itself, which Synapse always refuses with 400 "login as
// self" when the endpoint exists: no token is made. 404 and 403 mean it is not available.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#login-as-a-user
func (a *AdminClient) ProbeLoginAs(ctx context.Context) (*LoginAs, error) {
	const endpoint = "POST /_synapse/admin/v1/users/{userId}/login"
	if err := a.needToken(endpoint); err != nil {
		return nil, err
	}
	self, err := a.AdminUserID(ctx)
	if err != nil {
		return nil, fmt.Errorf("synapseclient: %s: finding the admin's user ID: %w", endpoint, err)
	}
	c := a.call("POST", "/_synapse/admin/v1/users/{userId}/login", "", []byte("{}"), self)
	var out struct {
		AccessToken string `json:"access_token"`
	}
	err = a.t.getJSON(ctx, c, &out)
	var he *Error
	switch {
	case err == nil:
		// No released Synapse logs an admin in as itself.
		return nil, fmt.Errorf("synapseclient: %s for the admin itself returned a token; Synapse refuses that, so something between the shim and Synapse answers instead", endpoint)
	case errors.Is(err, ErrLoginAsSelf):
		return &LoginAs{Available: true}, nil
	case errors.As(err, &he) && (he.Status == 404 || he.Status == 403):
		return &LoginAs{Refusal: he}, nil
	}
	return nil, err
}

// AuthIssuer asks the client API which OAuth 2.0 server Synapse hands its logins to: the issuer of
// /_matrix/client/v1/auth_metadata (Synapse ≥ 1.128) or of the unstable MSC2965 auth_issuer
// (earlier), "" when Synapse handles logins itself.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv1auth_metadata
func (a *AdminClient) AuthIssuer(ctx context.Context) (string, error) {
	for _, p := range []string{"/_matrix/client/v1/auth_metadata", "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer"} {
		c := &call{endpoint: "GET " + p, method: "GET", base: a.base, path: p, auth: noAuth, idempotent: true}
		var out struct {
			Issuer string `json:"issuer"`
		}
		err := a.t.getJSON(ctx, c, &out)
		switch {
		case err == nil && out.Issuer != "":
			return out.Issuer, nil
		case err == nil:
			return "", fmt.Errorf("synapseclient: %s: answer has no issuer", c.endpoint)
		case errors.Is(err, ErrNotFound):
			continue
		default:
			return "", err
		}
	}
	return "", nil
}
