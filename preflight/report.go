package preflight

import (
	"cmp"
	"fmt"
	"slices"
)

// Severity says whether a finding stops the migration.
type Severity string

// Severities, from the one that stops the migration to the one that only informs.
const (
	Blocker Severity = "blocker"
	Warning Severity = "warning"
	Info    Severity = "info"
)

// Finding codes: stable names for machines; messages may change, codes do not.
const (
	CodeNoAdminAccess           = "no_admin_access"             // blocker: the token is not a server admin's (or is refused)
	CodeSynapseVersion          = "synapse_version"             // info: the version and where it came from
	CodeAdminEndpointMissing    = "admin_endpoint_missing"      // blocker for endpoints the export needs, info otherwise
	CodeUsers                   = "users"                       // info: user counts
	CodeUsersWithoutPassword    = "users_without_password"      // info: active users who cannot log in by password
	CodeRooms                   = "rooms"                       // info: room counts by version
	CodeRoomVersionUnsupported  = "room_version_unsupported"    // blocker (v1, v2) unless accepted
	CodeRoomVersionUnstable     = "room_version_unstable"       // warning: v3–v5, which Conduit hosts as unstable
	CodeRoomVersionUnknown      = "room_version_unknown"        // warning: a version Conduit does not list
	CodeRoomNoLocalMember       = "room_no_local_member"        // warning: federation answers 403 for the room
	CodeAcceptUnused            = "accept_unused"               // warning: -accept names a room that needs no acceptance
	CodeMedia                   = "media"                       // info: local media counts
	CodeSigningKeyOK            = "signing_key_ok"              // info: the configured key is the published one
	CodeSigningKeyMismatch      = "signing_key_mismatch"        // blocker
	CodeServerNameMismatch      = "server_name_mismatch"        // blocker: Synapse publishes keys for another name
	CodePublishedKeyNotInConfig = "published_key_not_in_config" // warning: a key Synapse publishes that the shim lacks
	CodeFederationSelfAccepted  = "federation_self_accepted"    // info, with the rc_federation advice
	CodeFederationSelfRefused   = "federation_self_refused"     // blocker
	CodeFederationRateLimited   = "federation_rate_limited"     // warning, with the rc_federation advice
	CodeDiskSpace               = "disk_space"                  // info: free space and the estimate
	CodeDiskSpaceLow            = "disk_space_low"              // warning: free space under twice the estimate
	CodeDiskSpaceUnknown        = "disk_space_unknown"          // info: the free space could not be read
	CodeMASDeployment           = "mas_deployment"              // warning: logins are handed to MAS; what is and is not carried
	CodeLoginAsRefused          = "login_as_refused"            // warning: login-as refused without MAS; export needs -synapse-db
	CodeCompromisedKey          = "compromised_signing_key"     // blocker: a current or old key whose private half is public
)

// Finding is one result of a check. Subject names what it is about (a room ID, a key ID, an
// endpoint, a path) when there is one thing.
type Finding struct {
	Severity Severity `json:"severity"`
	Code     string   `json:"code"`
	Subject  string   `json:"subject,omitempty"`
	Message  string   `json:"message"`
	// Accepted marks a blocker the operator accepted with -accept; it counts as a warning.
	Accepted bool `json:"accepted,omitempty"`
}

// CheckError is a check that could not run: the report is incomplete.
type CheckError struct {
	Check string `json:"check"`
	Error string `json:"error"`
}

// Endpoint is one admin API endpoint the migration uses and whether this Synapse offers it.
type Endpoint struct {
	Name      string `json:"name"`
	Path      string `json:"path"`
	Since     string `json:"since"`
	Required  bool   `json:"required"`
	Available bool   `json:"available"`
	UsedFor   string `json:"used_for"`
}

// UserCounts are the local accounts; WithoutPassword counts active accounts only.
type UserCounts struct {
	Total           int `json:"total"`
	Active          int `json:"active"`
	Deactivated     int `json:"deactivated"`
	Admins          int `json:"admins"`
	Guests          int `json:"guests"`
	WithoutPassword int `json:"without_password"`
}

// RoomCounts are the rooms Synapse knows, by version; EventsEstimate is the sum of the newest
// depths of the rooms a local user is joined to (what the archive will fetch, roughly), or -1 when
// it was not estimated.
type RoomCounts struct {
	Total          int            `json:"total"`
	ByVersion      map[string]int `json:"by_version"`
	Unsupported    int            `json:"unsupported"`
	Accepted       int            `json:"accepted"`
	Unstable       int            `json:"unstable"`
	NoLocalMember  int            `json:"no_local_member"`
	StateEvents    int            `json:"state_events"`
	EventsEstimate int64          `json:"events_estimate"`
}

// MediaCounts are the local uploads, from the users' media statistics.
type MediaCounts struct {
	Users int   `json:"users"`
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Disk is the free space where the export or the cache will be written.
type Disk struct {
	Purpose string `json:"purpose"` // "export" or "cache"
	Path    string `json:"path"`
	// Checked is the existing folder whose file system was measured (Path or its nearest parent).
	Checked   string `json:"checked"`
	FreeBytes uint64 `json:"free_bytes"`
	// EstimateBytes is what the export or cache will take, roughly; 0 when unknown.
	EstimateBytes uint64 `json:"estimate_bytes"`
	// SharedWith names the other purpose when both are on one file system (their estimates add up).
	SharedWith string `json:"shared_with,omitempty"`
}

// Report is the outcome of a check run. ExitStatus is 0 with no blockers, 1 with blockers, 2 when
// a check could not run (the report is then incomplete, whatever it found).
type Report struct {
	ServerName     string       `json:"server_name"`
	SynapseURL     string       `json:"synapse_url,omitempty"`
	SynapseVersion string       `json:"synapse_version"`
	AdminUser      string       `json:"admin_user,omitempty"`
	Endpoints      []Endpoint   `json:"endpoints"`
	Users          *UserCounts  `json:"users"`
	Rooms          *RoomCounts  `json:"rooms"`
	Media          *MediaCounts `json:"media"`
	Disk           []Disk       `json:"disk"`
	Findings       []Finding    `json:"findings"`
	Errors         []CheckError `json:"errors"`
	Blockers       int          `json:"blockers"`
	Warnings       int          `json:"warnings"`
	ExitStatus     int          `json:"exit_status"`
}

func (r *Report) add(sev Severity, code, subject, format string, args ...any) *Finding {
	r.Findings = append(r.Findings, Finding{Severity: sev, Code: code, Subject: subject, Message: fmt.Sprintf(format, args...)})
	return &r.Findings[len(r.Findings)-1]
}

var severityRank = map[Severity]int{Blocker: 0, Warning: 1, Info: 2}

// finish orders the findings (blockers first, each kind in check order) and sets the totals.
func (r *Report) finish() {
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		return cmp.Compare(severityRank[a.Severity], severityRank[b.Severity])
	})
	r.Blockers, r.Warnings = 0, 0
	for _, f := range r.Findings {
		switch f.Severity {
		case Blocker:
			r.Blockers++
		case Warning:
			r.Warnings++
		}
	}
	switch {
	case len(r.Errors) > 0:
		r.ExitStatus = 2
	case r.Blockers > 0:
		r.ExitStatus = 1
	default:
		r.ExitStatus = 0
	}
}

// IncompleteReport is the report of a run that could not start (bad configuration, Synapse
// unreachable): no findings, the error under check, exit status 2.
func IncompleteReport(serverName, synapseURL, check string, err error) *Report {
	r := &Report{ServerName: serverName, SynapseURL: synapseURL, Endpoints: []Endpoint{}, Disk: []Disk{},
		Findings: []Finding{}, Errors: []CheckError{{Check: check, Error: err.Error()}}}
	r.finish()
	return r
}
