package synapseclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/transition-matrix/transition-matrix/internal/backoff"
)

// transport is the HTTP layer the three clients share: per-host concurrency limit, per-attempt
// timeout, retries with a bounded budget, size-limited bodies and typed errors.
type transport struct {
	cfg   *Config
	mu    sync.Mutex
	hosts map[string]chan struct{}
}

// authFunc sets the Authorization header of one attempt; uri is the path and query as sent.
type authFunc func(req *http.Request, uri string, body []byte) error

// call is one logical request.
type call struct {
	endpoint   string // method + path template, for errors and logs
	method     string
	base       *url.URL
	path       string // escaped path, starting with '/'
	query      string // encoded query, without '?'
	body       []byte // JSON body or nil
	auth       authFunc
	idempotent bool // safe to resend after a connection error or a 5xx
}

func bearer(token string) authFunc {
	return func(req *http.Request, _ string, _ []byte) error {
		if token == "" {
			return fmt.Errorf("%w: no access token", ErrNotConfigured)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		return nil
	}
}

func noAuth(*http.Request, string, []byte) error { return nil }

// escape percent-encodes one path segment or query value the way Synapse's own clients do:
// everything but unreserved characters, so "@alice:example.org" becomes "%40alice%3Aexample.org".
func escape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func (t *transport) backoff(retry int) time.Duration {
	return backoff.Policy{Base: t.cfg.BaseBackoff, Max: t.cfg.MaxBackoff, Jitter: t.cfg.Jitter}.Delay(retry)
}

// acquire takes a slot of host's concurrency limit, or fails when ctx ends first.
func (t *transport) acquire(ctx context.Context, host string) (func(), error) {
	t.mu.Lock()
	sem, ok := t.hosts[host]
	if !ok {
		sem = make(chan struct{}, t.cfg.MaxPerHost)
		t.hosts[host] = sem
	}
	t.mu.Unlock()
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// do runs c with retries and returns the body of a 2xx answer; any other answer is an *Error,
// possibly wrapped in a *RetryError.
func (t *transport) do(ctx context.Context, c *call) ([]byte, error) {
	raw := c.base.String() + c.path
	if c.query != "" {
		raw += "?" + c.query
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("synapseclient: %s: building URL: %w", c.endpoint, err)
	}
	uri := u.RequestURI()
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		status, body, retryAfter, err := t.once(ctx, c, u, uri)
		if err == nil && status >= 200 && status < 300 {
			return body, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("synapseclient: %s: %w", c.endpoint, ctxErr)
		}
		retry := false
		var last error
		if err != nil {
			last = fmt.Errorf("synapseclient: %s: %w", c.endpoint, err)
			retry = c.idempotent && !errors.Is(err, ErrResponseTooLarge) && !errors.Is(err, ErrNotConfigured)
		} else {
			e := newError(c.endpoint, status, body, retryAfter)
			last = e
			retry = status == http.StatusTooManyRequests || (status >= 500 && c.idempotent)
		}
		if !retry {
			return nil, last
		}
		wait := retryAfter
		if status != http.StatusTooManyRequests || wait <= 0 {
			wait = t.backoff(attempt)
		}
		if attempt >= t.cfg.MaxAttempts {
			return nil, &RetryError{Endpoint: c.endpoint, Attempts: attempt, Waited: waited, Reason: "max attempts reached", Last: last}
		}
		if waited+wait > t.cfg.MaxTotalWait {
			return nil, &RetryError{Endpoint: c.endpoint, Attempts: attempt, Waited: waited,
				Reason: fmt.Sprintf("next wait of %s would pass the max total wait of %s", wait, t.cfg.MaxTotalWait), Last: last}
		}
		if t.cfg.OnRetry != nil {
			t.cfg.OnRetry(RetryEvent{Endpoint: c.endpoint, Attempt: attempt, Status: status, Wait: wait, Err: last})
		}
		if err := t.cfg.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("synapseclient: %s: waiting to retry: %w", c.endpoint, err)
		}
		waited += wait
	}
}

// once makes one attempt; status is 0 when there was no HTTP answer. retryAfter is the wait a
// 429 answer asked for.
func (t *transport) once(ctx context.Context, c *call, u *url.URL, uri string) (status int, body []byte, retryAfter time.Duration, err error) {
	release, err := t.acquire(ctx, u.Host)
	if err != nil {
		return 0, nil, 0, err
	}
	defer release()
	actx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if c.body != nil {
		rd = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(actx, c.method, u.String(), rd)
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", t.cfg.UserAgent)
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := c.auth(req, uri, c.body); err != nil {
		return 0, nil, 0, err
	}
	resp, err := t.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, t.cfg.MaxResponseBytes+1))
	if err != nil {
		return 0, nil, 0, fmt.Errorf("reading response body: %w", err)
	}
	if int64(len(body)) > t.cfg.MaxResponseBytes {
		return 0, nil, 0, fmt.Errorf("%w: over %d bytes", ErrResponseTooLarge, t.cfg.MaxResponseBytes)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		retryAfter = parseRetryAfter(body, resp.Header.Get("Retry-After"))
	}
	return resp.StatusCode, body, retryAfter, nil
}

// parseRetryAfter prefers the body's retry_after_ms (millisecond precision), then the Retry-After
// header in seconds or as an HTTP date.
func parseRetryAfter(body []byte, header string) time.Duration {
	if gjson.ValidBytes(body) {
		if r := gjson.GetBytes(body, "retry_after_ms"); r.Type == gjson.Number && r.Int() > 0 {
			return time.Duration(r.Int()) * time.Millisecond
		}
	}
	header = strings.TrimSpace(header)
	if header == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(header, 10, 64); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if when, err := http.ParseTime(header); err == nil {
		if d := time.Until(when); d > 0 {
			return d
		}
	}
	return 0
}

// newError builds the typed error of a non-2xx answer.
func newError(endpoint string, status int, body []byte, retryAfter time.Duration) *Error {
	e := &Error{Endpoint: endpoint, Status: status, RetryAfter: retryAfter}
	kept := body
	if len(kept) > maxErrorBody {
		kept = kept[:maxErrorBody]
	}
	e.Body = append([]byte(nil), kept...)
	if gjson.ValidBytes(body) {
		r := gjson.ParseBytes(body)
		switch {
		case r.IsObject():
			if v := r.Get("errcode"); v.Type == gjson.String {
				e.ErrCode = v.String()
			}
			if v := r.Get("error"); v.Type == gjson.String {
				e.Message = v.String()
			}
		case r.Type == gjson.String:
			e.Message = r.String()
		}
	}
	return e
}

// getJSON runs c and decodes the 2xx body into out.
func (t *transport) getJSON(ctx context.Context, c *call, out any) error {
	body, err := t.do(ctx, c)
	if err != nil {
		return err
	}
	return decode(c.endpoint, body, out)
}

// decode unmarshals a response body; the error names the endpoint and never quotes the body.
func decode(endpoint string, body []byte, out any) error {
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("synapseclient: %s: decoding response: %w", endpoint, err)
	}
	return nil
}
