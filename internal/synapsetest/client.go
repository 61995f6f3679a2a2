package synapsetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/jsontest"
	"github.com/transition-matrix/transition-matrix/internal/regsecret"
)

// ErrRequest is returned for a Synapse API answer other than 2xx.
var ErrRequest = errors.New("synapsetest: request failed")

// Registered is an account made by shared-secret registration.
type Registered struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
	Password    string `json:"-"`
}

// Register creates an account through /_synapse/admin/v1/register with the shared secret.
func (s *Server) Register(ctx context.Context, localpart, password string, admin bool) (Registered, error) {
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := s.Do(ctx, "GET", "/_synapse/admin/v1/register", "", nil, &nonce); err != nil {
		return Registered{}, fmt.Errorf("%w: nonce for %s: %v", ErrRegistration, localpart, err)
	}
	body := map[string]any{"nonce": nonce.Nonce, "username": localpart, "password": password,
		"admin": admin, "mac": regsecret.MAC(s.SharedSecret, nonce.Nonce, localpart, password, admin)}
	var r Registered
	if err := s.Do(ctx, "POST", "/_synapse/admin/v1/register", "", body, &r); err != nil {
		return Registered{}, fmt.Errorf("%w: %s: %v", ErrRegistration, localpart, err)
	}
	r.Password = password
	return r, nil
}

var httpClient = &http.Client{Timeout: 60 * time.Second}

// Do sends a JSON request to Synapse with the access token (none when empty) and decodes a 2xx
// answer into out (when not nil). body may be nil, []byte (sent as is) or a value to encode.
func (s *Server) Do(ctx context.Context, method, path, token string, body, out any) error {
	_, err := s.DoRaw(ctx, method, path, token, "application/json", body, out)
	return err
}

// DoRaw is Do with a content type, returning the raw answer too.
func (s *Server) DoRaw(ctx context.Context, method, path, token, contentType string, body, out any) ([]byte, error) {
	enc, err := jsontest.Body(body)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if enc != nil {
		rd = bytes.NewReader(enc)
	}
	// Retried only when Synapse answers 429 despite the raised limits, within a bounded count.
	for attempt := 0; ; attempt++ {
		if seeker, ok := rd.(io.Seeker); ok {
			_, _ = seeker.Seek(0, io.SeekStart)
		}
		req, err := http.NewRequestWithContext(ctx, method, s.BaseURL+path, rd)
		if err != nil {
			return nil, err
		}
		if rd != nil {
			req.Header.Set("Content-Type", contentType)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %s: %v", ErrRequest, method, path, err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: %s %s: reading the answer: %v", ErrRequest, method, path, err)
		}
		if resp.StatusCode == http.StatusTooManyRequests && attempt < 20 {
			var e struct {
				RetryAfterMS int `json:"retry_after_ms"`
			}
			_ = json.Unmarshal(raw, &e)
			wait := time.Duration(e.RetryAfterMS) * time.Millisecond
			if wait <= 0 || wait > 2*time.Second {
				wait = 100 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		if resp.StatusCode/100 != 2 {
			return raw, fmt.Errorf("%w: %s %s: %d %s", ErrRequest, method, path, resp.StatusCode, strings.TrimSpace(string(raw)))
		}
		if out != nil && len(raw) > 0 {
			if err := json.Unmarshal(raw, out); err != nil {
				return raw, fmt.Errorf("%w: %s %s: decoding %q: %v", ErrRequest, method, path, raw, err)
			}
		}
		return raw, nil
	}
}

// PathEscape escapes one path segment (room IDs, event IDs and user IDs hold '!', '$', '@', ':').
func PathEscape(s string) string { return url.PathEscape(s) }
