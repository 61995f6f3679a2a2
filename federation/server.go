// Package federation is the shim's HTTP server: the federation endpoints Conduit calls while it
// joins and backfills rooms, answered only to requests signed with the server's own name and key.
package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/signing"
)

// Config holds what the server needs; New fills the zero values with defaults.
type Config struct {
	Identity       *signing.Identity // the old server's name and keys: requests must be signed with them
	Source         EventSource
	AllowCIDRs     []netip.Prefix // when set, only these client addresses are answered
	MaxBodyBytes   int64          // request bodies above this are refused; default 1 MiB
	RequestTimeout time.Duration  // per-request deadline for the event source; default 60 s
	Version        string         // reported by /version
	Logger         *zap.Logger
	Metrics        RequestObserver // counts every request, refused ones too; nil = none
	Now            func() time.Time
}

// RequestObserver records each answered request by route name, HTTP status and duration;
// *metrics.Metrics is one.
type RequestObserver interface {
	ObserveRequest(endpoint string, status int, took time.Duration)
}

// Server routes and answers federation requests.
type Server struct {
	cfg    Config
	router *mux.Router
}

// New builds the server and its routes.
func New(cfg Config) (*Server, error) {
	if cfg.Identity == nil || len(cfg.Identity.Keys) == 0 {
		return nil, errors.New("federation: an identity with a signing key is required")
	}
	if cfg.Source == nil {
		return nil, errors.New("federation: an event source is required")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 60 * time.Second
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg}
	r := mux.NewRouter().UseEncodedPath().SkipClean(true) // no redirects: the signed URI is the one served
	r.NotFoundHandler = s.wrap("unknown", false, func(*http.Request, map[string]string) (any, error) {
		return nil, errorf(http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
	})
	r.MethodNotAllowedHandler = s.wrap("unknown", false, func(*http.Request, map[string]string) (any, error) {
		return nil, errorf(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "Unrecognized request")
	})
	r.Handle("/_matrix/key/v2/server", s.wrap("key", false, s.serverKeys)).Methods(http.MethodGet)
	r.Handle("/_matrix/federation/v1/version", s.wrap("version", false, s.version)).Methods(http.MethodGet)
	const v1 = "/_matrix/federation/v1"
	r.Handle(v1+"/backfill/{roomId}", s.wrap("backfill", true, s.backfill)).Methods(http.MethodGet)
	r.Handle(v1+"/event/{eventId}", s.wrap("event", true, s.event)).Methods(http.MethodGet)
	r.Handle(v1+"/get_missing_events/{roomId}", s.wrap("get_missing_events", true, s.getMissingEvents)).Methods(http.MethodPost)
	r.Handle(v1+"/state_ids/{roomId}", s.wrap("state_ids", true, s.stateIDs)).Methods(http.MethodGet)
	r.Handle(v1+"/state/{roomId}", s.wrap("state", true, s.state)).Methods(http.MethodGet)
	r.Handle(v1+"/event_auth/{roomId}/{eventId}", s.wrap("event_auth", true, s.eventAuth)).Methods(http.MethodGet)
	r.Handle(v1+"/make_join/{roomId}/{userId}", s.wrap("make_join", true, s.makeJoin)).Methods(http.MethodGet)
	r.Handle(v1+"/send_join/{roomId}/{eventId}", s.wrap("send_join", true, s.sendJoin(true))).Methods(http.MethodPut)
	r.Handle("/_matrix/federation/v2/send_join/{roomId}/{eventId}", s.wrap("send_join", true, s.sendJoin(false))).Methods(http.MethodPut)
	s.router = r
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// handlerFunc answers one request with a value to encode (or rawJSON), or an error.
type handlerFunc func(r *http.Request, vars map[string]string) (any, error)

// rawJSON is an answer that is already JSON and is written as is.
type rawJSON []byte

// wrap adds what every endpoint shares: the allow-list, X-Matrix authentication, a deadline,
// unescaped path variables, Matrix error bodies, the access log and the request metrics. The
// access log names the path but never the query, headers or body.
func (s *Server) wrap(endpoint string, authenticated bool, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.cfg.Now()
		status, origin := s.serve(w, r, authenticated, h)
		took := s.cfg.Now().Sub(start)
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.ObserveRequest(endpoint, status, took)
		}
		s.cfg.Logger.Info("request",
			zap.String("endpoint", endpoint), zap.String("method", r.Method), zap.String("path", r.URL.EscapedPath()),
			zap.Int("status", status), zap.String("origin", origin), zap.String("remote", r.RemoteAddr),
			zap.Duration("took", took))
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, authenticated bool, h handlerFunc) (status int, origin string) {
	if !s.allowed(r.RemoteAddr) {
		return writeError(w, errorf(http.StatusForbidden, "M_FORBIDDEN", "Your address may not use this server")), ""
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return writeError(w, errorf(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", fmt.Sprintf("Request body over %d bytes", s.cfg.MaxBodyBytes))), ""
	}
	if authenticated {
		var err error
		origin, err = signing.VerifyHTTPRequest(r, s.cfg.Identity.ServerName, s.cfg.Identity.Lookup(), s.cfg.MaxBodyBytes)
		if err != nil {
			return writeError(w, authError(err)), ""
		}
	}
	vars := map[string]string{}
	for k, v := range mux.Vars(r) {
		u, err := url.PathUnescape(v)
		if err != nil {
			return writeError(w, badParam(fmt.Sprintf("%s is not validly escaped", k))), origin
		}
		vars[k] = u
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	resp, err := h(r.WithContext(ctx), vars)
	if err != nil {
		me := toMatrixError(err)
		if me.Status >= 500 {
			s.cfg.Logger.Warn("request failed", zap.String("path", r.URL.EscapedPath()), zap.Error(err))
		}
		return writeError(w, me), origin
	}
	var body []byte
	if raw, ok := resp.(rawJSON); ok {
		body = raw
	} else if body, err = json.Marshal(resp); err != nil {
		return writeError(w, toMatrixError(err)), origin
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	return http.StatusOK, origin
}

// authError maps an X-Matrix failure to 401 M_UNAUTHORIZED (or 400 for a body that is not JSON).
func authError(err error) *matrixError {
	switch {
	case errors.Is(err, signing.ErrMalformedContent):
		return errorf(http.StatusBadRequest, "M_NOT_JSON", err.Error())
	case errors.Is(err, signing.ErrNoAuthorization):
		return errorf(http.StatusUnauthorized, "M_UNAUTHORIZED", "Missing X-Matrix Authorization header")
	default:
		return errorf(http.StatusUnauthorized, "M_UNAUTHORIZED", err.Error())
	}
}

func (s *Server) allowed(remoteAddr string) bool {
	if len(s.cfg.AllowCIDRs) == 0 {
		return true
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range s.cfg.AllowCIDRs {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func writeError(w http.ResponseWriter, e *matrixError) int {
	body, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	w.Write(body)
	return e.Status
}

// pduList writes PDUs as a JSON array of their original bytes.
func pduList(buf *bytes.Buffer, pdus []PDU) {
	buf.WriteByte('[')
	for i, p := range pdus {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(p)
	}
	buf.WriteByte(']')
}

// transaction is the {origin, origin_server_ts, pdus} answer of /backfill and /event.
func (s *Server) transaction(pdus []PDU) rawJSON {
	var buf bytes.Buffer
	origin, _ := json.Marshal(s.cfg.Identity.ServerName)
	fmt.Fprintf(&buf, `{"origin":%s,"origin_server_ts":%d,"pdus":`, origin, s.cfg.Now().UnixMilli())
	pduList(&buf, pdus)
	buf.WriteByte('}')
	return buf.Bytes()
}

// checkRoomID accepts "!opaque:server" and room version 12's "!opaque" IDs.
func checkRoomID(id string) error {
	if len(id) < 2 || id[0] != '!' || len(id) > 255 || strings.ContainsAny(id, "\x00 ") {
		return badParam("Invalid room ID")
	}
	return nil
}

// checkEventID accepts "$opaque" and room version 1–2's "$opaque:server" IDs.
func checkEventID(id string) error {
	if len(id) < 2 || id[0] != '$' || len(id) > 255 || strings.ContainsAny(id, "\x00 ") {
		return badParam("Invalid event ID")
	}
	return nil
}
