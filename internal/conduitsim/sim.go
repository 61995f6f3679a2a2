// Package conduitsim is a simulated patched Conduit for tests: the client API a migration drives
// (appservice masquerade, remote join through make_join/send_join, /messages with Conduit's backfill,
// room state and members), holding the old server's name and signing keys, whose federation
// requests for its own name go to the shim, as contrib/conduit's patch makes them.
// It is built on the Conduit-like consumer (internal/conduitlike), which checks every event.
package conduitsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/tb"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// Options configure a simulated Conduit. Identity or World is required.
type Options struct {
	// Identity is the server name and signing keys (Synapse's, imported); default from World.
	Identity *signing.Identity
	// ShimURL is where federation requests for the own server name go (the patch's option).
	ShimURL string
	// Peers maps other server names to federation base URLs; servers not listed are unreachable.
	Peers map[string]string
	// Keys are the public keys the server trusts (its own, seeded by the import, and remote ones);
	// default conduitlike.WorldKeys(World), or the Identity's keys.
	Keys conduitlike.Keys
	// ASToken is the appservice as_token; its namespace is every user of the server name.
	ASToken string
	// ASSender is the appservice's sender_localpart (default "transition-matrix", as in docs/cutover.md): the user it acts as
	// without ?user_id=.
	ASSender string
	// World, when set, gives the identity, keys and local users (with their profiles).
	World *world.World
	// Users are further local users it knows (as imported), besides World's.
	Users []string
	// HTTP is the client for federation requests (default http.DefaultClient).
	HTTP *http.Client
	// Now is the clock for the join's origin_server_ts (default time.Now).
	Now func() time.Time
	// MaxMessagesLimit caps /messages' limit, as Conduit does (default 100).
	MaxMessagesLimit int
	// UserData, when set, is what the user endpoints serve (users.go): a Conduit database the
	// import wrote, read with the conduit package. Without it they serve World's profiles only.
	UserData UserData
}

// Server is a simulated Conduit; serve it with Handler or Start.
type Server struct {
	// URL is the base URL when started with Start.
	URL string

	opts     Options
	id       *signing.Identity
	keys     conduitlike.Keys
	now      func() time.Time
	handler  http.Handler
	faults   *Faults
	userNS   *regexp.Regexp
	asSender string

	mu       sync.Mutex
	local    map[string]localUser // user ID -> profile; presence = the user exists
	rooms    map[string]*room
	count    int64 // Conduit's global counter (next_count)
	requests map[string]int
}

// localUser is a local account as the simulated Conduit holds it: existence and profile.
type localUser struct {
	DisplayName, AvatarURL string
}

// routeSets lets other files of the package (users.go) add their routes to every Server.
var routeSets []func(s *Server, add func(name, method, pattern string, h handlerFunc))

// handlerFunc answers an authenticated client request as user, with the route's path variables.
type handlerFunc func(w http.ResponseWriter, r *http.Request, user string, vars map[string]string)

// New builds a simulated Conduit.
func New(o Options) (*Server, error) {
	id := o.Identity
	if id == nil && o.World != nil {
		w := o.World
		id = &signing.Identity{ServerName: w.ServerName, Keys: []signing.Key{{ID: signing.KeyID(w.SigningKey.KeyID), Seed: w.SigningKey.Private.Seed()}}}
		for _, k := range w.OldKeys {
			id.OldKeys = append(id.OldKeys, signing.OldKey{ID: signing.KeyID(k.KeyID), Public: k.Public, ExpiredTS: k.ExpiredTS})
		}
	}
	if id == nil || len(id.Keys) == 0 {
		return nil, fmt.Errorf("conduitsim: an Identity or a World is required")
	}
	if o.ShimURL == "" {
		return nil, fmt.Errorf("conduitsim: ShimURL is required (where requests for %s go)", id.ServerName)
	}
	if o.ASToken == "" {
		return nil, fmt.Errorf("conduitsim: ASToken is required")
	}
	s := &Server{opts: o, id: id, keys: o.Keys, now: o.Now, faults: newFaults(), asSender: o.ASSender,
		local: map[string]localUser{}, rooms: map[string]*room{}, requests: map[string]int{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.asSender == "" {
		s.asSender = "transition-matrix"
	}
	if s.opts.MaxMessagesLimit == 0 {
		s.opts.MaxMessagesLimit = 100
	}
	if s.keys == nil {
		if o.World != nil {
			s.keys = conduitlike.WorldKeys(o.World)
		} else {
			keys := conduitlike.StaticKeys{}
			for _, k := range id.Keys {
				keys.Add(id.ServerName, string(k.ID), k.PublicKey(), 0)
			}
			for _, k := range id.OldKeys {
				keys.Add(id.ServerName, string(k.ID), k.Public, k.ExpiredTS)
			}
			s.keys = keys
		}
	}
	s.userNS = regexp.MustCompile(`^@.*:` + regexp.QuoteMeta(id.ServerName) + `$`)
	if o.World != nil {
		for _, u := range o.World.Users {
			s.local[u.ID] = localUser{DisplayName: u.Profile.DisplayName, AvatarURL: u.Profile.AvatarURL}
		}
	}
	for _, u := range o.Users {
		if _, ok := s.local[u]; !ok {
			s.local[u] = localUser{}
		}
	}
	s.local["@"+s.asSender+":"+id.ServerName] = localUser{}
	s.handler = s.routes()
	return s, nil
}

// Start serves a new simulated Conduit on an httptest server closed when the test ends.
func Start(t tb.TB, o Options) *Server {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	s.URL = ts.URL
	return s
}

// Handler serves the client API.
func (s *Server) Handler() http.Handler { return s.handler }

// ServerName is the server name the simulated Conduit holds.
func (s *Server) ServerName() string { return s.id.ServerName }

// Faults is the fault injector; hooks may be changed while it serves.
func (s *Server) Faults() *Faults { return s.faults }

// AddUser makes a local user known (as the import would), with a profile used for joins.
func (s *Server) AddUser(userID, displayName, avatarURL string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.local[userID] = localUser{DisplayName: displayName, AvatarURL: avatarURL}
}

// Requests returns a copy of the request counts: client routes by name ("client.join",
// "client.messages", ...) and federation requests it sent by endpoint ("fed.make_join",
// "fed.send_join", "fed.backfill", "fed.event").
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.requests))
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

func (s *Server) countRequest(name string) {
	s.mu.Lock()
	s.requests[name]++
	s.mu.Unlock()
}

// nextCount is Conduit's next_count: one global counter for PDU positions.
func (s *Server) nextCount() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count++
	return s.count
}

func (s *Server) routes() http.Handler {
	r := mux.NewRouter().UseEncodedPath().SkipClean(true)
	add := func(name, method, pattern string, h handlerFunc) {
		r.Handle(pattern, s.wrap(name, h)).Methods(method)
	}
	r.Handle("/_matrix/client/versions", s.wrap("client.versions", nil)).Methods(http.MethodGet)
	const c = "/_matrix/client/v3"
	add("client.whoami", "GET", c+"/account/whoami", s.whoami)
	add("client.join", "POST", c+"/join/{room}", s.join)
	add("client.join", "POST", c+"/rooms/{room}/join", s.join)
	add("client.messages", "GET", c+"/rooms/{room}/messages", s.messages)
	add("client.state", "GET", c+"/rooms/{room}/state", s.state)
	add("client.joined_members", "GET", c+"/rooms/{room}/joined_members", s.joinedMembers)
	add("client.joined_rooms", "GET", c+"/joined_rooms", s.joinedRooms)
	for _, set := range routeSets {
		set(s, add)
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "Unrecognized request")
	})
	return r
}

// wrap counts the request, authenticates it (h == nil: no auth, /versions) and unescapes the path
// variables.
func (s *Server) wrap(name string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.countRequest(name)
		if h == nil {
			writeJSON(w, http.StatusOK, map[string]any{"versions": []string{"r0.5.0", "r0.6.0", "v1.1", "v1.2", "v1.3", "v1.4"},
				"unstable_features": map[string]bool{}})
			return
		}
		user, status, code, msg := s.authenticate(r)
		if status != 0 {
			writeError(w, status, code, msg)
			return
		}
		vars := map[string]string{}
		for k, v := range mux.Vars(r) {
			u, err := url.PathUnescape(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "bad path: "+err.Error())
				return
			}
			vars[k] = u
		}
		h(w, r, user, vars)
	})
}

// authenticate takes the as_token (Authorization: Bearer or ?access_token=) and the user named by
// ?user_id=, which must be in the namespace and exist, as Conduit's appservice auth demands.
func (s *Server) authenticate(r *http.Request) (user string, status int, code, msg string) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if r.Header.Get("Authorization") == "" {
		tok = r.URL.Query().Get("access_token")
	}
	if tok == "" {
		return "", http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token."
	}
	if tok != s.opts.ASToken {
		return "", http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "Unknown access token."
	}
	user = r.URL.Query().Get("user_id")
	if user == "" {
		return "@" + s.asSender + ":" + s.id.ServerName, 0, "", ""
	}
	if !s.userNS.MatchString(user) {
		return "", http.StatusForbidden, "M_EXCLUSIVE", "User is not in namespace."
	}
	s.mu.Lock()
	_, ok := s.local[user]
	s.mu.Unlock()
	if !ok {
		return "", http.StatusForbidden, "M_FORBIDDEN", "Application service has not registered this user."
	}
	return user, 0, "", ""
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, user string, _ map[string]string) {
	writeJSON(w, http.StatusOK, map[string]any{"user_id": user}) // real Conduit 0.10.12 sends no is_guest (recorded)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"errcode": code, "error": msg})
}
