package synapsesim

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"path"
	"strconv"
	"sync"
	"time"
)

// FaultKind is what a fault rule does to a request.
type FaultKind int

// Fault kinds.
const (
	FaultError    FaultKind = iota + 1 // answer with an error status (default 500 M_UNKNOWN)
	FaultDelay                         // wait Delay, or until the rule's Hold is released
	FaultDrop                          // close the connection without an answer
	FaultTamper                        // flip a byte in every event "content" of the answer
	FaultTruncate                      // send half of the body, then close the connection
)

// Fault describes one fault rule.
type Fault struct {
	// Endpoint is a path.Match glob over route names ("fed.backfill", "fed.*", "admin.*"); "" matches all.
	Endpoint string
	Kind     FaultKind
	// Times limits the rule to the next Times matching requests; 0 means every request.
	Times int
	// Probability, if in (0,1), applies the rule to a request with that chance (seeded RNG).
	Probability float64
	Status      int           // FaultError status (default 500)
	Delay       time.Duration // FaultDelay duration when the rule has no hold
}

// Rule is an installed fault rule.
type Rule struct {
	Fault
	f       *Faults
	hits    int
	left    int
	release chan struct{}
	once    sync.Once
	arrived chan struct{}
}

// Hits is how many requests the rule has applied to.
func (r *Rule) Hits() int {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	return r.hits
}

// Remove uninstalls the rule (releasing held requests).
func (r *Rule) Remove() {
	r.f.mu.Lock()
	for i, x := range r.f.rules {
		if x == r {
			r.f.rules = append(r.f.rules[:i:i], r.f.rules[i+1:]...)
			break
		}
	}
	r.f.mu.Unlock()
	r.Release()
}

// Arrived receives once per request the hold rule has started holding.
func (r *Rule) Arrived() <-chan struct{} { return r.arrived }

// Release lets every held request (and later ones) through.
func (r *Rule) Release() {
	if r.release != nil {
		r.once.Do(func() { close(r.release) })
	}
}

// Faults injects failures into a server's answers; safe for concurrent use.
type Faults struct {
	mu    sync.Mutex
	rules []*Rule
	rng   *rand.Rand
}

// NewFaults returns an empty injector whose probabilistic rules draw from a seeded RNG.
func NewFaults(seed uint64) *Faults {
	return &Faults{rng: rand.New(rand.NewPCG(seed, 0x6661756c74))}
}

// Add installs a rule.
func (f *Faults) Add(fault Fault) *Rule {
	r := &Rule{Fault: fault, f: f, left: fault.Times}
	f.mu.Lock()
	f.rules = append(f.rules, r)
	f.mu.Unlock()
	return r
}

// Clear removes every rule and releases held requests.
func (f *Faults) Clear() {
	f.mu.Lock()
	rules := f.rules
	f.rules = nil
	f.mu.Unlock()
	for _, r := range rules {
		r.Release()
	}
}

// FailNext answers the next n requests to endpoint with status (500 if 0).
func (f *Faults) FailNext(endpoint string, n, status int) *Rule {
	return f.Add(Fault{Endpoint: endpoint, Kind: FaultError, Times: n, Status: status})
}

// FailRandomly answers requests to endpoint with 500 with probability p.
func (f *Faults) FailRandomly(endpoint string, p float64) *Rule {
	return f.Add(Fault{Endpoint: endpoint, Kind: FaultError, Probability: p})
}

// Hold blocks every request to endpoint until the returned rule is released (or the request is
// cancelled); Arrived signals each held request, so tests need no sleeps.
func (f *Faults) Hold(endpoint string) *Rule {
	r := &Rule{Fault: Fault{Endpoint: endpoint, Kind: FaultDelay}, f: f,
		release: make(chan struct{}), arrived: make(chan struct{}, 1024)}
	f.mu.Lock()
	f.rules = append(f.rules, r)
	f.mu.Unlock()
	return r
}

// DelayAll delays every request to endpoint by d.
func (f *Faults) DelayAll(endpoint string, d time.Duration) *Rule {
	return f.Add(Fault{Endpoint: endpoint, Kind: FaultDelay, Delay: d})
}

// DropNext closes the connection of the next n requests to endpoint without answering.
func (f *Faults) DropNext(endpoint string, n int) *Rule {
	return f.Add(Fault{Endpoint: endpoint, Kind: FaultDrop, Times: n})
}

// TamperNext corrupts the event contents of the next n answers of endpoint.
func (f *Faults) TamperNext(endpoint string, n int) *Rule {
	return f.Add(Fault{Endpoint: endpoint, Kind: FaultTamper, Times: n})
}

// TruncateNext cuts the next n answers of endpoint in half and closes the connection.
func (f *Faults) TruncateNext(endpoint string, n int) *Rule {
	return f.Add(Fault{Endpoint: endpoint, Kind: FaultTruncate, Times: n})
}

// pick returns the rules that apply to one request to route name, consuming their counts.
func (f *Faults) pick(name string) []*Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Rule
	for _, r := range f.rules {
		if r.Endpoint != "" {
			if ok, _ := path.Match(r.Endpoint, name); !ok {
				continue
			}
		}
		if r.Times > 0 && r.left <= 0 {
			continue
		}
		if r.Probability > 0 && r.Probability < 1 && f.rng.Float64() >= r.Probability {
			continue
		}
		if r.Times > 0 {
			r.left--
		}
		r.hits++
		out = append(out, r)
	}
	return out
}

// serve runs next under the faults that apply to route name.
func (f *Faults) serve(name string, w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter)) {
	rules := f.pick(name)
	var post *Rule
	for _, rule := range rules {
		switch rule.Kind {
		case FaultDelay:
			if rule.release != nil {
				select {
				case rule.arrived <- struct{}{}:
				default:
				}
				select {
				case <-rule.release:
				case <-r.Context().Done():
					return
				}
			} else if rule.Delay > 0 {
				t := time.NewTimer(rule.Delay)
				select {
				case <-t.C:
				case <-r.Context().Done():
					t.Stop()
					return
				}
			}
		case FaultError:
			status := rule.Status
			if status == 0 {
				status = http.StatusInternalServerError
			}
			writeError(w, status, "M_UNKNOWN", "Internal server error")
			return
		case FaultDrop:
			drop(w)
			return
		case FaultTamper, FaultTruncate:
			if post == nil {
				post = rule
			}
		}
	}
	if post == nil {
		next(w)
		return
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	next(rec)
	body := rec.body.Bytes()
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	switch post.Kind {
	case FaultTamper:
		body = tamper(body)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.status)
		_, _ = w.Write(body)
	case FaultTruncate:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.status)
		_, _ = w.Write(body[:len(body)/2])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		drop(w)
	}
}

// drop closes the client connection without (the rest of) an answer.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// tamper flips the case of the first letter of the first key of every non-empty "content"
// object, so content hashes (and, for state events, signatures) no longer verify.
func tamper(body []byte) []byte {
	out := append([]byte(nil), body...)
	marker := []byte(`"content":{"`)
	for i := 0; ; {
		j := bytes.Index(out[i:], marker)
		if j < 0 {
			break
		}
		k := i + j + len(marker)
		if k < len(out) {
			c := out[k]
			if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
				out[k] = c ^ 0x20
			} else {
				out[k] = 'X'
			}
		}
		i = k
	}
	return out
}

// recorder buffers a handler's answer so a fault can rewrite it.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}
