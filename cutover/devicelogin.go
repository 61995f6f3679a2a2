package cutover

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Real Conduit (0.10.12 and next) answers 500 (a panic) to /messages and room state read by an
// application service without a device, so room reads act as each member through a device the
// appservice logs in (m.login.application_service) and logs out again when the reads are done.

// deviceLogins makes and forgets one appservice device per user; the zero value is ready.
type deviceLogins struct {
	mu      sync.Mutex
	devices map[string]string // user → device token; "" = the target has no appservice login
}

// appserviceLogin is the request an application service makes to log user in as deviceID.
// https://spec.matrix.org/v1.16/client-server-api/#appservice-login
func appserviceLogin(user, deviceID, displayName string) map[string]any {
	return map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": user},
		"device_id": deviceID, "initial_device_display_name": displayName}
}

// noAppserviceLogin says whether a refused login means the target does not offer appservice
// logins (so identity assertion alone is used), rather than a failure.
func noAppserviceLogin(status int, errcode string) bool {
	return status == http.StatusNotFound || errcode == "M_UNRECOGNIZED" || errcode == "M_UNKNOWN"
}

// token returns user's device token, logging in with login once; "" when the target has no
// appservice login. login returns the token, or the status and errcode it was refused with.
func (d *deviceLogins) token(ctx context.Context, user string, login func(ctx context.Context, user string) (string, int, string, error)) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if tok, ok := d.devices[user]; ok {
		return tok, nil
	}
	if d.devices == nil {
		d.devices = map[string]string{}
	}
	tok, status, errcode, err := login(ctx, user)
	if err != nil && noAppserviceLogin(status, errcode) {
		tok, err = "", nil
	}
	if err != nil {
		return "", err
	}
	d.devices[user] = tok
	return tok, nil
}

// logoutAll logs out (and so deletes) every device token made.
func (d *deviceLogins) logoutAll(ctx context.Context, logout func(ctx context.Context, user, token string) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for user, tok := range d.devices {
		if tok == "" {
			continue
		}
		if err := logout(ctx, user, tok); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(d.devices, user)
	}
	return errors.Join(errs...)
}

// DefaultDeviceID is the device room reads go through when Client.DeviceID is empty.
const DefaultDeviceID = "TRANSITIONMATRIX"

type tokenKey struct{}

// withToken makes the requests under ctx use tok instead of the appservice token.
func withToken(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return context.WithValue(ctx, tokenKey{}, tok)
}

func (c *Client) tokenFor(ctx context.Context) string {
	if tok, ok := ctx.Value(tokenKey{}).(string); ok {
		return tok
	}
	return c.Token
}

// asMember is ctx and query for reading a room as user: through user's device where the target
// offers appservice logins, else by identity assertion.
func (c *Client) asMember(ctx context.Context, user string) (context.Context, url.Values, error) {
	tok, err := c.logins.token(ctx, user, func(ctx context.Context, user string) (string, int, string, error) {
		var out struct {
			AccessToken string `json:"access_token"`
		}
		id, name := c.DeviceID, c.DeviceName
		if id == "" {
			id = DefaultDeviceID
		}
		if name == "" {
			name = "transition-matrix (removed when the command ends)"
		}
		body, _ := json.Marshal(appserviceLogin(user, id, name))
		err := c.doAttempts(ctx, 2, "POST", "POST /login", clientPrefix+"/login", nil, body, &out)
		var te *TargetError
		if errors.As(err, &te) {
			return "", te.Status, te.ErrCode, err
		}
		return out.AccessToken, 0, "", err
	})
	if err != nil {
		return ctx, nil, err
	}
	if tok == "" {
		return ctx, asUser(user), nil
	}
	return withToken(ctx, tok), url.Values{}, nil
}

// Close logs out the devices the client logged in on the target.
func (c *Client) Close(ctx context.Context) error {
	return c.logins.logoutAll(ctx, func(ctx context.Context, user, tok string) error {
		if err := c.doAttempts(withToken(ctx, tok), 2, "POST", "POST /logout", clientPrefix+"/logout", nil, []byte("{}"), nil); err != nil {
			return errors.New("logging out " + user + "'s " + c.DeviceID + " device: " + strings.TrimPrefix(err.Error(), "target: "))
		}
		return nil
	})
}
