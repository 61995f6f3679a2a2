//go:build conduit

package realconduit

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
)

// ErrStatus is returned for an HTTP answer other than 2xx; the error names method, path, status
// and the body's Matrix error.
var ErrStatus = errors.New("realconduit: request failed")

// Client speaks a homeserver's client API (Synapse's or Conduit's) with JSON bodies.
type Client struct {
	BaseURL string
	HTTP    *http.Client
}

// NewClient is a client for baseURL with a bounded per-request timeout.
func NewClient(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), HTTP: &http.Client{Timeout: 120 * time.Second}}
}

// StatusError is an answer other than 2xx.
type StatusError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// Unwrap makes errors.Is(err, ErrStatus) true.
func (e *StatusError) Unwrap() error { return ErrStatus }

// Do sends method path (with query) with the access token (none when empty); body is nil, []byte
// (sent as is) or a value encoded as JSON; a 2xx answer is decoded into out when out is not nil.
func (c *Client) Do(ctx context.Context, method, path, token string, body, out any) error {
	raw, err := c.Raw(ctx, method, path, token, body)
	if err != nil {
		return err
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// Raw is Do returning the answer's bytes.
func (c *Client) Raw(ctx context.Context, method, path, token string, body any) ([]byte, error) {
	return c.RawType(ctx, method, path, token, "application/json", body)
}

// RawType is Raw with a content type for the body.
func (c *Client) RawType(ctx context.Context, method, path, token, contentType string, body any) ([]byte, error) {
	enc, err := jsontest.Body(body)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if enc != nil {
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return raw, &StatusError{Method: method, Path: path, Status: resp.StatusCode, Body: truncate(string(raw), 400)}
	}
	return raw, nil
}

// Esc escapes one path segment (room IDs, event IDs and user IDs hold ':', '!', '$', '/').
func Esc(s string) string { return url.PathEscape(s) }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
