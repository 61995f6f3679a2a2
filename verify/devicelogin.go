package verify

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

// DeviceLogin makes and forgets one appservice device per user; the zero value is ready.
type DeviceLogin struct {
	mu      sync.Mutex
	devices map[string]string // user → device token; "" = the target has no appservice login
}

// AppserviceLogin is the request an application service makes to log user in as deviceID.
// https://spec.matrix.org/v1.16/client-server-api/#appservice-login
func AppserviceLogin(user, deviceID, displayName string) map[string]any {
	return map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": user},
		"device_id": deviceID, "initial_device_display_name": displayName}
}

// NoAppserviceLogin says whether a refused login means the target does not offer appservice
// logins (so identity assertion alone is used), rather than a failure.
func NoAppserviceLogin(status int, errcode string) bool {
	return status == http.StatusNotFound || errcode == "M_UNRECOGNIZED" || errcode == "M_UNKNOWN"
}

// Token returns user's device token, logging in with login once; "" when the target has no
// appservice login. login returns the token, or the status and errcode it was refused with.
func (d *DeviceLogin) Token(ctx context.Context, user string, login func(ctx context.Context, user string) (string, int, string, error)) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if tok, ok := d.devices[user]; ok {
		return tok, nil
	}
	if d.devices == nil {
		d.devices = map[string]string{}
	}
	tok, status, errcode, err := login(ctx, user)
	if err != nil && NoAppserviceLogin(status, errcode) {
		tok, err = "", nil
	}
	if err != nil {
		return "", err
	}
	d.devices[user] = tok
	return tok, nil
}

// LogoutAll logs out (and so deletes) every device Token made.
func (d *DeviceLogin) LogoutAll(ctx context.Context, logout func(ctx context.Context, user, token string) error) error {
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

// verifyDeviceID is the device verify reads rooms through on targets that need one.
const verifyDeviceID = "TRANSITIONMATRIXVERIFY"

type tokenKey struct{}

// withToken makes the requests under ctx use tok instead of the appservice token.
func withToken(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return context.WithValue(ctx, tokenKey{}, tok)
}

func (t *HTTPTarget) tokenFor(ctx context.Context) string {
	if tok, ok := ctx.Value(tokenKey{}).(string); ok {
		return tok
	}
	return t.Token
}

// asMember is ctx and query for reading a room as user: through user's verify device where the
// target offers appservice logins, else by identity assertion.
func (t *HTTPTarget) asMember(ctx context.Context, user string) (context.Context, url.Values, error) {
	tok, err := t.logins.Token(ctx, user, func(ctx context.Context, user string) (string, int, string, error) {
		var out struct {
			AccessToken string `json:"access_token"`
		}
		body, _ := json.Marshal(AppserviceLogin(user, verifyDeviceID, "transition-matrix verify (removed when verify ends)"))
		err := t.doAttempts(ctx, 2, "POST", "POST /login", clientPrefix+"/login", nil, body, &out)
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

// Close logs out the devices verify logged in on the target.
func (t *HTTPTarget) Close(ctx context.Context) error {
	return t.logins.LogoutAll(ctx, func(ctx context.Context, user, tok string) error {
		if err := t.doAttempts(withToken(ctx, tok), 2, "POST", "POST /logout", clientPrefix+"/logout", nil, []byte("{}"), nil); err != nil {
			return errors.New("logging out " + user + "'s verify device: " + strings.TrimPrefix(err.Error(), "target: "))
		}
		return nil
	})
}
