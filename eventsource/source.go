// Package eventsource answers the shim's federation questions from the verified event cache and,
// for what the cache lacks, from the still-running Synapse: every event fetched is verified
// (signatures of every server that must sign, content hash, event ID) before it is stored.
package eventsource

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/matrixspec"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// Metrics receives what the source observes; a nil Metrics in Config records nothing.
type Metrics interface {
	CacheLookup(endpoint string, hit bool)
	ObserveUpstream(endpoint, outcome string, took time.Duration)
	EventsVerified(outcome string, n int)
}

// Config holds what a Source needs; New fills the zero values with defaults.
type Config struct {
	Identity *signing.Identity // the server the shim is; its current and old keys verify its events
	Cache    *eventcache.Cache // opened with the default Options (serving every servable status)
	// Upstream is Synapse's federation API (asked as Synapse itself); nil answers from the cache alone.
	Upstream synapseclient.FederationAPI
	// Admin is Synapse's admin API, for the current state and forward extremities make_join and
	// send_join need; nil answers joins with 502.
	Admin RoomStateAPI
	// Keys gives other servers' keys (NotaryKeys asks Synapse); nil knows only Identity's keys.
	Keys    KeyFetcher
	Metrics Metrics
	Logger  *zap.Logger
	// MaxRounds caps the upstream fetch rounds one request may trigger; default 8.
	MaxRounds int
	// FetchParallel caps concurrent single-event fetches; default 8.
	FetchParallel int
	// NoPrefetch turns off fetching the next /backfill page in the background while the
	// requester handles this one.
	NoPrefetch bool
}

// Source implements federation.EventSource over an event cache and Synapse.
type Source struct {
	cfg     Config
	cache   *eventcache.Cache
	up      synapseclient.FederationAPI
	checker checker
	log     *zap.Logger
	metrics Metrics

	metaMu   sync.Mutex
	versions sync.Map // room ID → room version
	memo     joinMemo // the state each recent make_join template was built on
	// handoverMu holds a *sync.Mutex per room: backfills of one room run one at a time.
	handoverMu sync.Map
	prefetch   prefetcher
}

// New checks cfg and builds a Source.
func New(cfg Config) (*Source, error) {
	if cfg.Identity == nil {
		return nil, errors.New("eventsource: Config.Identity is required")
	}
	if cfg.Cache == nil {
		return nil, errors.New("eventsource: Config.Cache is required")
	}
	if cfg.MaxRounds <= 0 {
		cfg.MaxRounds = 8
	}
	if cfg.FetchParallel <= 0 {
		cfg.FetchParallel = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Source{cfg: cfg, cache: cfg.Cache, up: cfg.Upstream, log: cfg.Logger, metrics: cfg.Metrics,
		checker: checker{keys: newWithIdentity(cfg.Identity, cfg.Keys)}}
	if s.metrics == nil {
		s.metrics = noMetrics{}
	}
	return s, nil
}

type noMetrics struct{}

func (noMetrics) CacheLookup(string, bool)                      {}
func (noMetrics) ObserveUpstream(string, string, time.Duration) {}
func (noMetrics) EventsVerified(string, int)                    {}

func (s *Source) observe(endpoint string, start time.Time, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, synapseclient.ErrNotFound):
		outcome = "not_found"
	case errors.Is(err, context.DeadlineExceeded):
		outcome = "timeout"
	default:
		outcome = "error"
	}
	s.metrics.ObserveUpstream(endpoint, outcome, time.Since(start))
}

// upstreamError maps a synapseclient error to matrixspec's errors, keeping the cause.
// A client error of Synapse's (400, a 403 other than "host not in room") is passed on as it is:
// the request was at fault, not Synapse.
func upstreamError(err error) error {
	var se *synapseclient.Error
	if errors.As(err, &se) && (se.Status == 400 || se.Status == 403 && !errors.Is(se, synapseclient.ErrHostNotInRoom)) {
		code := se.ErrCode
		if code == "" {
			code = "M_UNKNOWN"
		}
		msg := se.Message
		if msg == "" {
			msg = http.StatusText(se.Status)
		}
		return fmt.Errorf("%w: %v", matrixspec.New(se.Status, code, msg), err)
	}
	switch {
	case errors.Is(err, synapseclient.ErrNotFound):
		return fmt.Errorf("%w: %v", matrixspec.ErrNotFound, err)
	case errors.Is(err, synapseclient.ErrHostNotInRoom):
		return fmt.Errorf("%w: %v", matrixspec.ErrHostNotInRoom, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return err
	default:
		return fmt.Errorf("%w: %v", matrixspec.ErrUpstreamUnavailable, err)
	}
}
