// Package federation is the shim's HTTP server: the federation endpoints Conduit calls while it
// joins and backfills rooms, answered only to requests signed with the server's own name and key.
package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/signing"

	"github.com/transition-matrix/transition-matrix/matrixspec"
)

// Config holds what the server needs; New fills the zero values with defaults.
type Config struct {
	Identity       *signing.Identity // the old server's name and keys: requests must be signed with them
	Source         EventSource
	AllowCIDRs     []netip.Prefix // when set, only these client addresses are answered
	MaxBodyBytes   int64          // request bodies above this are refused; default 1 MiB
	RequestTimeout time.Duration  // per-request deadline for the event source; default 60 s
	// BodyReadTimeout is how long a request body may take to arrive, counted from the start of
	// the handler; default 30 s. The connection is closed when it runs out.
	BodyReadTimeout time.Duration
	// MaxBodyReaders bounds the authenticated requests whose body is being read and verified at
	// once (each holds up to MaxBodyBytes twice); default 4. Others wait up to half of
	// BodyReadTimeout for a turn, then get 429 M_LIMIT_EXCEEDED.
	MaxBodyReaders int
	Version        string // reported by /version
	Logger         *zap.Logger
	Metrics        RequestObserver // counts every request, refused ones too; nil = none
	Now            func() time.Time
}

// RequestObserver records each answered request by route name, HTTP status and duration;
// *metrics.Metrics is one.
type RequestObserver interface {
	ObserveRequest(endpoint string, status int, took time.Duration)
}

// HTTPLimits are the limits of the HTTP layer in front of the handler; zero values take the
// defaults.
type HTTPLimits struct {
	MaxHeaderBytes    int           // request line and headers; default 64 KiB (Go answers 431 above)
	HeaderReadTimeout time.Duration // for the request line and headers; default 10 s
	IdleTimeout       time.Duration // a kept-alive connection's wait for its next request; default 2 min
}

// Defaults of HTTPLimits.
const (
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultHeaderReadTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
)

// NewHTTPServer is the http.Server the shim runs h in: header size and time bounds, idle
// connections closed, and no built-in answer to "OPTIONS *" (h answers it, as a Matrix error).
func NewHTTPServer(h http.Handler, l HTTPLimits, errorLog *log.Logger) *http.Server {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.HeaderReadTimeout <= 0 {
		l.HeaderReadTimeout = DefaultHeaderReadTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	return &http.Server{Handler: h, MaxHeaderBytes: l.MaxHeaderBytes, ReadHeaderTimeout: l.HeaderReadTimeout,
		IdleTimeout: l.IdleTimeout, DisableGeneralOptionsHandler: true, ErrorLog: errorLog}
}

// Server routes and answers federation requests.
type Server struct {
	cfg     Config
	router  *mux.Router
	readers chan struct{} // one token per body being read
}

// Defaults of Config.
const (
	DefaultMaxBodyBytes    = 1 << 20
	DefaultRequestTimeout  = 60 * time.Second
	DefaultBodyReadTimeout = 30 * time.Second
	DefaultMaxBodyReaders  = 4
)

// New builds the server and its routes.
func New(cfg Config) (*Server, error) {
	if cfg.Identity == nil || len(cfg.Identity.Keys) == 0 {
		return nil, errors.New("federation: an identity with a signing key is required")
	}
	if cfg.Source == nil {
		return nil, errors.New("federation: an event source is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if cfg.MaxBodyReaders <= 0 {
		cfg.MaxBodyReaders = DefaultMaxBodyReaders
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
	s := &Server{cfg: cfg, readers: make(chan struct{}, cfg.MaxBodyReaders)}
	r := mux.NewRouter().UseEncodedPath().SkipClean(true) // no redirects: the signed URI is the one served
	r.NotFoundHandler = s.wrap("unknown", false, func(*http.Request, map[string]string) (any, error) {
		return nil, matrixspec.New(http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
	})
	r.MethodNotAllowedHandler = s.wrap("unknown", false, func(r *http.Request, _ map[string]string) (any, error) {
		e := matrixspec.New(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", fmt.Sprintf("Method %s is not allowed here", r.Method))
		e.Allow = s.allowedMethods(r)
		return nil, e
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

// allowedMethods lists the methods a route answers on r's path, for the Allow header of a 405.
func (s *Server) allowedMethods(r *http.Request) string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut} {
		var match mux.RouteMatch
		c := r.Clone(r.Context())
		c.Method = m
		if s.router.Match(c, &match) && match.MatchErr == nil {
			allow = append(allow, m)
		}
	}
	return strings.Join(allow, ", ")
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
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody {
		// Bound the wait for the body, here and in the server's discard of an unread body; a
		// connection whose body does not arrive in time is closed.
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)) // the wall clock: cfg.Now may be a test clock
	}
	refuse := func(e *matrixspec.Error) int {
		if hasBody {
			// Never wait for a body that will not be used: close the connection after the
			// answer, and end the server's wait to discard what is left of the body at once.
			w.Header().Set("Connection", "close")
			http.NewResponseController(w).SetReadDeadline(time.Now())
		}
		return writeError(w, e)
	}
	if !s.allowed(r.RemoteAddr) {
		return refuse(matrixspec.New(http.StatusForbidden, "M_FORBIDDEN", "Your address may not use this server")), ""
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return refuse(tooLarge(s.cfg.MaxBodyBytes)), ""
	}
	if authenticated {
		// What can be checked without the body is checked first: a request that cannot verify
		// never has its body read.
		auth, err := signing.CheckRequestHeaders(r.Header.Values("Authorization"), s.cfg.Identity.ServerName, s.cfg.Identity.Lookup())
		if err != nil {
			return refuse(authError(err)), ""
		}
		var body []byte
		if hasBody {
			if body, err = s.readBody(w, r); err != nil {
				return refuse(matrixspec.For(err)), ""
			}
			hasBody = false
		}
		uri := r.RequestURI
		if uri == "" {
			uri = r.URL.RequestURI()
		}
		if origin, err = auth.Verify(r.Method, uri, body); err != nil {
			return refuse(authError(err)), ""
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	vars := map[string]string{}
	for k, v := range mux.Vars(r) {
		u, err := url.PathUnescape(v)
		if err != nil {
			return refuse(badParam(fmt.Sprintf("%s is not validly escaped", k))), origin
		}
		vars[k] = u
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	resp, err := h(r.WithContext(ctx), vars)
	if err != nil {
		me := matrixspec.For(err)
		if me.Status >= 500 {
			s.cfg.Logger.Warn("request failed", zap.String("path", r.URL.EscapedPath()), zap.Error(err))
		}
		return refuse(me), origin
	}
	var body []byte
	if raw, ok := resp.(rawJSON); ok {
		body = raw
	} else if body, err = json.Marshal(resp); err != nil {
		return refuse(matrixspec.For(err)), origin
	}
	if hasBody {
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, http.StatusOK, body)
	return http.StatusOK, origin
}

// readBody reads an authenticated request's body, at most MaxBodyBytes and before the body read
// deadline, while holding one of MaxBodyReaders turns; it waits for a turn half the deadline.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	wait := time.NewTimer(s.cfg.BodyReadTimeout / 2)
	defer wait.Stop()
	select {
	case s.readers <- struct{}{}:
	case <-wait.C:
		return nil, errBusy
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	defer func() { <-s.readers }()
	body, err := readAtMost(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), s.cfg.MaxBodyBytes, r.ContentLength)
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooBig):
		return nil, tooLarge(s.cfg.MaxBodyBytes)
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return nil, matrixspec.New(http.StatusRequestTimeout, "M_UNKNOWN", fmt.Sprintf("The request body did not arrive within %s", s.cfg.BodyReadTimeout))
	case err != nil:
		return nil, badParam("Cannot read the request body: " + err.Error())
	}
	// The whole body is in: lift the deadline, or the server's watch for a client hang-up would
	// hit it and cancel a request still being answered.
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	return body, nil
}

// readAtMost reads r to its end into a buffer that never grows past limit+1 bytes: sized by
// the announced length when there is one, else 64 KiB and then limit+1 at once (one copy).
func readAtMost(r io.Reader, limit, announced int64) ([]byte, error) {
	size := int64(64 << 10)
	if announced >= 0 {
		size = announced + 1 // one more, to see the end without growing
	}
	buf := make([]byte, 0, min(size, limit+1))
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) > limit {
				return nil, &http.MaxBytesError{Limit: limit}
			}
			grown := make([]byte, len(buf), limit+1)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func tooLarge(max int64) *matrixspec.Error {
	return matrixspec.New(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", fmt.Sprintf("Request body over %d bytes", max))
}

// authError maps an X-Matrix failure to 401 M_UNAUTHORIZED (or 400 for a body that is not JSON).
func authError(err error) *matrixspec.Error {
	switch {
	case errors.Is(err, signing.ErrMalformedContent):
		return matrixspec.New(http.StatusBadRequest, "M_NOT_JSON", err.Error())
	case errors.Is(err, signing.ErrNoAuthorization):
		return matrixspec.New(http.StatusUnauthorized, "M_UNAUTHORIZED", "Missing X-Matrix Authorization header")
	default:
		return matrixspec.New(http.StatusUnauthorized, "M_UNAUTHORIZED", err.Error())
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

func writeError(w http.ResponseWriter, e *matrixspec.Error) int {
	body, _ := json.Marshal(e)
	if e.Status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", e.Allow)
	}
	writeJSON(w, e.Status, body)
	return e.Status
}

// writeJSON writes a JSON answer with its length, so HEAD answers (which carry no body) still
// say what they are.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
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
	if !validID(id, '!') {
		return badParam("Invalid room ID: want '!' and up to 255 bytes of UTF-8 without spaces or control characters")
	}
	return nil
}

// checkEventID accepts "$opaque" and room version 1–2's "$opaque:server" IDs.
func checkEventID(id string) error {
	if !validID(id, '$') {
		return badParam("Invalid event ID: want '$' and up to 255 bytes of UTF-8 without spaces or control characters")
	}
	return nil
}

// validID reports whether id starts with sigil and is at most 255 bytes of UTF-8 with no space
// or control character: what no server would ever have created is refused here, not sent on.
func validID(id string, sigil byte) bool {
	if len(id) < 2 || id[0] != sigil || len(id) > 255 || !utf8.ValidString(id) {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
