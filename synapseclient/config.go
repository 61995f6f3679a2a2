package synapseclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/backoff"
	"github.com/transition-matrix/transition-matrix/signing"
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout          = 60 * time.Second
	DefaultMaxAttempts      = 5
	DefaultBaseBackoff      = 500 * time.Millisecond
	DefaultMaxBackoff       = 30 * time.Second
	DefaultMaxTotalWait     = 2 * time.Minute
	DefaultMaxPerHost       = 8
	DefaultMaxResponseBytes = 64 << 20
	DefaultUserAgent        = "transition-matrix-synapseclient"
	DefaultPageSize         = 500
)

// Config says where Synapse is and how to talk to it. Zero durations and limits take the defaults
// above; negative ones are errors.
type Config struct {
	// BaseURL is Synapse's client listener (admin and client APIs), e.g. "http://127.0.0.1:8008".
	BaseURL string
	// FederationURL is where federation and key requests go; it defaults to BaseURL. Nothing
	// resolves the server name: this URL is used as is. Requests are signed over the path as sent,
	// so a path prefix here must reach Synapse unchanged.
	FederationURL string
	// AdminToken is an access token of a server admin, needed by the admin API.
	AdminToken string
	// AdminUserID is the admin token's user; when empty it is asked from /account/whoami once.
	AdminUserID string
	// ServerName is the homeserver's name, e.g. "example.org"; federation requests are signed
	// with origin = destination = ServerName.
	ServerName string
	// Identity holds the server's signing key; needed by the federation API only.
	Identity *signing.Identity
	// ServerVersion, when set (e.g. "1.67.0"), skips asking Synapse its version for gated endpoints.
	ServerVersion string

	Timeout          time.Duration // per attempt, including reading the body
	MaxAttempts      int           // attempts per request, first one included
	BaseBackoff      time.Duration // first retry delay; doubles on each retry, with jitter
	MaxBackoff       time.Duration // cap of one computed retry delay
	MaxTotalWait     time.Duration // cap of all retry delays of one request together
	MaxPerHost       int           // requests in flight per host, all three APIs together
	MaxResponseBytes int64         // bodies longer than this fail with ErrResponseTooLarge
	PageSize         int           // page size of AllUsers and AllRooms
	UserAgent        string

	// HTTPClient sends the requests; http.DefaultClient's transport when nil. Its own Timeout, if
	// any, applies on top of Timeout.
	HTTPClient *http.Client
	// Sleep waits between retries; tests inject a recorder. It must return ctx.Err() when ctx ends.
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter turns a computed backoff d into the delay actually used (default: uniform in [d/2, d]).
	// It does not apply to waits the server asked for.
	Jitter func(d time.Duration) time.Duration
	// OnRetry, when set, is told about every retry (possibly concurrently); it never sees tokens
	// or bodies.
	OnRetry func(RetryEvent)
}

// RetryEvent describes one retry for logging.
type RetryEvent struct {
	Endpoint string
	Attempt  int           // the attempt that failed, from 1
	Status   int           // HTTP status, 0 for a connection error
	Wait     time.Duration // delay before the next attempt
	Err      error
}

func parseBaseURL(field, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%s: %q must be an http or https URL", field, raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%s: %q has no host", field, raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%s: %q must not carry user info, query or fragment", field, raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// validate checks cfg and returns every problem at once, each naming its field.
func (cfg *Config) validate() (base, fed *url.URL, err error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.BaseURL == "" {
		add("BaseURL: required")
	} else if base, err = parseBaseURL("BaseURL", cfg.BaseURL); err != nil {
		errs = append(errs, err)
	}
	if cfg.FederationURL != "" {
		if fed, err = parseBaseURL("FederationURL", cfg.FederationURL); err != nil {
			errs = append(errs, err)
		}
	} else {
		fed = base
	}
	if cfg.ServerName == "" {
		add("ServerName: required")
	} else if strings.ContainsAny(cfg.ServerName, "/@!#$ \t\n?") {
		add("ServerName: %q is not a server name", cfg.ServerName)
	}
	if strings.ContainsAny(cfg.AdminToken, " \t\r\n") {
		add("AdminToken: contains white space")
	}
	if cfg.AdminUserID != "" && !strings.HasPrefix(cfg.AdminUserID, "@") {
		add("AdminUserID: %q is not a user ID", cfg.AdminUserID)
	}
	if id := cfg.Identity; id != nil {
		if len(id.Keys) == 0 {
			add("Identity: has no signing key")
		} else if len(id.Keys[0].Seed) != 32 {
			add("Identity: signing key %s has a %d-byte seed, want 32", id.Keys[0].ID, len(id.Keys[0].Seed))
		}
		if cfg.ServerName != "" && id.ServerName != cfg.ServerName {
			add("Identity: server name %q differs from ServerName %q", id.ServerName, cfg.ServerName)
		}
	}
	if cfg.ServerVersion != "" {
		if _, err := ParseVersion(cfg.ServerVersion); err != nil {
			add("ServerVersion: %v", err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Timeout", cfg.Timeout}, {"BaseBackoff", cfg.BaseBackoff}, {"MaxBackoff", cfg.MaxBackoff}, {"MaxTotalWait", cfg.MaxTotalWait}} {
		if d.v < 0 {
			add("%s: %s is negative", d.name, d.v)
		}
	}
	if cfg.MaxAttempts < 0 {
		add("MaxAttempts: %d is negative", cfg.MaxAttempts)
	}
	if cfg.MaxPerHost < 0 {
		add("MaxPerHost: %d is negative", cfg.MaxPerHost)
	}
	if cfg.PageSize < 0 {
		add("PageSize: %d is negative", cfg.PageSize)
	}
	if cfg.MaxResponseBytes < 0 {
		add("MaxResponseBytes: %d is negative", cfg.MaxResponseBytes)
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("synapseclient: invalid config: %w", errors.Join(errs...))
	}
	return base, fed, nil
}

func (cfg *Config) applyDefaults() {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.BaseBackoff == 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxTotalWait == 0 {
		cfg.MaxTotalWait = DefaultMaxTotalWait
	}
	if cfg.MaxPerHost == 0 {
		cfg.MaxPerHost = DefaultMaxPerHost
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Sleep == nil {
		cfg.Sleep = backoff.Sleep
	}
	if cfg.Jitter == nil {
		cfg.Jitter = backoff.HalfJitter
	}
}

// Client holds the shared HTTP layer and hands out the three faces of Synapse.
type Client struct {
	cfg   Config
	t     *transport
	admin *AdminClient
	fed   *FederationClient
}

// New validates cfg (reporting every problem at once) and builds a Client.
func New(cfg Config) (*Client, error) {
	base, fed, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	t := &transport{cfg: &cfg, hosts: map[string]chan struct{}{}}
	c := &Client{cfg: cfg, t: t}
	c.admin = &AdminClient{t: t, base: base, token: cfg.AdminToken, adminID: cfg.AdminUserID, fedBase: fed, serverName: cfg.ServerName, pageSize: cfg.PageSize}
	if cfg.ServerVersion != "" {
		v, _ := ParseVersion(cfg.ServerVersion)
		c.admin.version = &v
	}
	c.fed = &FederationClient{t: t, base: fed, id: cfg.Identity, serverName: cfg.ServerName}
	return c, nil
}

// Admin returns the admin API client (admin token).
func (c *Client) Admin() *AdminClient { return c.admin }

// Federation returns the federation API client, signing as the server itself.
func (c *Client) Federation() *FederationClient { return c.fed }

// User returns a client-server API client acting with token (e.g. a login-as puppet token).
func (c *Client) User(token string) *UserClient {
	return &UserClient{t: c.t, base: c.admin.base, token: token}
}

// AdminAsUser returns a client-server API client acting with the admin token, for the admin's
// own data (Synapse refuses login-as-self).
func (c *Client) AdminAsUser() *UserClient { return c.User(c.cfg.AdminToken) }
