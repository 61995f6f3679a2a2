package realconduit

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/transition-matrix/transition-matrix/signing"
)

// Recorder is a reverse proxy between Conduit and the shim that records every federation request
// Conduit sends for its own name: method, path, query, and which events went back and forth.
type Recorder struct {
	URL string

	mu       sync.Mutex
	requests []RecordedRequest
	versions map[string]string // room ID → room version, learned from make_join answers
	srv      *http.Server
}

// NewRecorder makes a recorder; Start puts it in front of a shim.
func NewRecorder() *Recorder { return &Recorder{versions: map[string]string{}} }

// Start listens on a free loopback port and forwards to target.
func (r *Recorder) Start(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r.URL = "http://" + l.Addr().String()
	proxy := httputil.NewSingleHostReverseProxy(u)
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := RecordedRequest{Method: req.Method, Path: req.URL.EscapedPath(), At: time.Now()}
		if q := req.URL.Query(); len(q) > 0 {
			rec.Query = q
		}
		rec.Authorization = xMatrixParams(req.Header.Get("Authorization"))
		if req.Body != nil {
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			rec.RequestKeys, rec.RequestType = jsonKeys(body)
		}
		cw := &captureWriter{ResponseWriter: w, status: 200}
		proxy.ServeHTTP(cw, req)
		rec.Status = cw.status
		rec.ResponseKeys, _ = jsonKeys(cw.body.Bytes())
		r.mu.Lock()
		r.learnVersion(cw.body.Bytes())
		rec.EventIDs, rec.Counts = answerEvents(cw.body.Bytes(), r.versions)
		r.requests = append(r.requests, rec)
		r.mu.Unlock()
	})}
	go func() { _ = r.srv.Serve(l) }()
	return nil
}

// Requests returns what was recorded so far, in order.
func (r *Recorder) Requests() []RecordedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RecordedRequest(nil), r.requests...)
}

// Close stops the listener.
func (r *Recorder) Close() error {
	if r.srv == nil {
		return nil
	}
	return r.srv.Close()
}

// WriteJSON writes v indented to path (mode 0644: recordings hold no secrets).
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) { c.status = code; c.ResponseWriter.WriteHeader(code) }
func (c *captureWriter) Write(b []byte) (int, error) {
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

// xMatrixParams are the parameter names of an X-Matrix Authorization header, sorted.
func xMatrixParams(h string) []string {
	const prefix = "X-Matrix "
	if len(h) < len(prefix) || h[:len(prefix)] != prefix {
		if h == "" {
			return nil
		}
		return []string{"(not X-Matrix)"}
	}
	var names []string
	for _, part := range splitParams(h[len(prefix):]) {
		for i := 0; i < len(part); i++ {
			if part[i] == '=' {
				names = append(names, part[:i])
				break
			}
		}
	}
	sort.Strings(names)
	return names
}

func splitParams(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// jsonKeys are the sorted top-level keys of a JSON object, and its "type" when it is an event.
func jsonKeys(b []byte) ([]string, string) {
	var obj map[string]json.RawMessage
	if len(b) == 0 || json.Unmarshal(b, &obj) != nil {
		return nil, ""
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var typ string
	_ = json.Unmarshal(obj["type"], &typ)
	return keys, typ
}

// answerEvents are the event IDs of an answer's PDUs and the lengths of its arrays.
func answerEvents(b []byte, versions map[string]string) ([]string, map[string]int) {
	var obj map[string]json.RawMessage
	if len(b) == 0 || json.Unmarshal(b, &obj) != nil {
		return nil, nil
	}
	counts := map[string]int{}
	var ids []string
	for k, v := range obj {
		var arr []json.RawMessage
		if json.Unmarshal(v, &arr) == nil {
			counts[k] = len(arr)
			if k == "pdus" {
				for _, p := range arr {
					ids = append(ids, EventID(p, versions))
				}
			}
		}
	}
	if len(counts) == 0 {
		counts = nil
	}
	return ids, counts
}

// learnVersion keeps the room version a make_join answer names.
func (r *Recorder) learnVersion(b []byte) {
	var v struct {
		RoomVersion string `json:"room_version"`
		Event       struct {
			RoomID string `json:"room_id"`
		} `json:"event"`
	}
	if json.Unmarshal(b, &v) == nil && v.RoomVersion != "" && v.Event.RoomID != "" {
		r.versions[v.Event.RoomID] = v.RoomVersion
	}
}

// EventID is a PDU's event ID: its event_id field (room versions 1 and 2) or its reference hash
// under its room's version (from versions; 10 when unknown).
func EventID(pdu []byte, versions map[string]string) string {
	var v struct {
		EventID string `json:"event_id"`
		RoomID  string `json:"room_id"`
	}
	if json.Unmarshal(pdu, &v) == nil && v.EventID != "" {
		return v.EventID
	}
	version := versions[v.RoomID]
	if version == "" {
		version = "10"
	}
	id, err := signing.EventID(version, pdu)
	if err != nil {
		return "(invalid pdu: " + err.Error() + ")"
	}
	return id
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
