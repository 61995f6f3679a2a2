package realconduit

import (
	"regexp"
	"sort"
	"strings"
	"time"
)

// RecordedRequest is one federation request Conduit sent, and what the shim answered.
type RecordedRequest struct {
	Method string              `json:"method"`
	Path   string              `json:"path"` // as sent, percent-encoded
	Query  map[string][]string `json:"query,omitempty"`
	// Authorization is the X-Matrix header's parameter names (values are secret or random).
	Authorization []string `json:"authorization_params,omitempty"`
	// RequestKeys are the top-level keys of a JSON request body (send_join's event).
	RequestKeys []string `json:"request_keys,omitempty"`
	RequestType string   `json:"request_event_type,omitempty"`
	Status      int      `json:"status"`
	// ResponseKeys are the top-level keys of the JSON answer.
	ResponseKeys []string `json:"response_keys,omitempty"`
	// EventIDs are the IDs of the PDUs answered (backfill's pdus, event's pdu), in answer order.
	EventIDs []string `json:"event_ids,omitempty"`
	// Counts are the lengths of the answer's arrays (pdus, state, auth_chain).
	Counts map[string]int `json:"counts,omitempty"`
	At     time.Time      `json:"-"`
}

// FederationRecording is what real Conduit sent to the shim, in order, with the IDs in paths and
// queries replaced by their kind.
type FederationRecording struct {
	ConduitVersion string             `json:"conduit_version"`
	Requests       []RecordedTemplate `json:"requests"`
}

// RecordedTemplate is one recorded request with its path and query as templates.
type RecordedTemplate struct {
	RecordedRequest
	PathTemplate  string              `json:"path_template"`
	QueryTemplate map[string][]string `json:"query_template,omitempty"`
}

// ClientRecording is the shape of real Conduit's answers to the client-API requests
// internal/conduitsim imitates.
type ClientRecording struct {
	ConduitVersion string                  `json:"conduit_version"`
	Answers        map[string]ClientAnswer `json:"answers"`
}

// ClientAnswer is one answer: status, errcode for errors, and the body's Schema.
type ClientAnswer struct {
	Request string `json:"request"` // method and path template
	Status  int    `json:"status"`
	ErrCode string `json:"errcode,omitempty"`
	Schema  any    `json:"schema"`
}

var (
	idSegment = regexp.MustCompile(`(%21|!)[^/]+|(%24|\$)[^/]+|(%40|@)[^/]+`)
)

// Template replaces the room, event and user IDs in an escaped path by {room}, {event}, {user}.
func Template(path string) string {
	return idSegment.ReplaceAllStringFunc(path, func(s string) string {
		switch {
		case strings.HasPrefix(s, "!") || strings.HasPrefix(s, "%21"):
			return "{room}"
		case strings.HasPrefix(s, "$") || strings.HasPrefix(s, "%24"):
			return "{event}"
		}
		return "{user}"
	})
}

// QueryTemplate replaces event IDs in query values by {event}.
func QueryTemplate(q map[string][]string) map[string][]string {
	if len(q) == 0 {
		return nil
	}
	out := map[string][]string{}
	for k, vs := range q {
		for _, v := range vs {
			if strings.HasPrefix(v, "$") {
				v = "{event}"
			}
			out[k] = append(out[k], v)
		}
	}
	return out
}

// Names is the sorted list of a recording's answer names.
func (r *ClientRecording) Names() []string {
	var out []string
	for k := range r.Answers {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
