package verify

import "time"

// Report format of report.json (docs/verify.md).
const (
	ReportFormat        = "transition-matrix-verify"
	ReportFormatVersion = 1
)

// Room statuses.
const (
	RoomOK = "ok"
	// RoomMissing: events of the room's history are not on the target.
	RoomMissing = "missing"
	// RoomStateDiffers: every event arrived, but the target's current state lacks or disagrees
	// with part of the source's.
	RoomStateDiffers = "state-differs"
	// RoomNotJoined: no local member the source has joined to the room is in it on the target
	// (`shim rejoin` has not joined it).
	RoomNotJoined = "not-joined"
	// RoomUnsupportedVersion: the target cannot host the room's version (Conduit: 1 and 2).
	RoomUnsupportedVersion = "unsupported-version"
	// RoomNoLocalMembers: no local user is joined in the source, so the room cannot be joined
	// through the shim; nothing to compare.
	RoomNoLocalMembers = "no-local-members"
	// RoomError: the room could not be checked (the error says why).
	RoomError = "error"
)

// Statuses of a user and of each aspect of a user.
const (
	UserOK      = "ok"
	UserDiffers = "differs"
	UserMissing = "missing"
	UserSkipped = "skipped" // deactivated: the target keeps no devices or keys for it
	UserError   = "error"
	// AspectNone: the source has nothing of this kind for the user.
	AspectNone = "none"
)

// Outcomes of a whole run (Report.Result).
const (
	ResultOK         = "ok"         // everything the source has is on the target
	ResultMissing    = "missing"    // something is missing or differs
	ResultIncomplete = "incomplete" // some rooms or users could not be checked
)

// Report is what verify found; it is written as report.json. It holds IDs, counts and
// statuses, never tokens, password hashes or key material.
type Report struct {
	Format        string    `json:"format"`
	FormatVersion int       `json:"format_version"`
	ServerName    string    `json:"server_name"`
	Source        string    `json:"source"`
	Target        string    `json:"target"`
	Strict        bool      `json:"strict"`
	StartedAt     time.Time `json:"started_at"`
	FinishedAt    time.Time `json:"finished_at"`
	// Result is ResultOK, ResultMissing or ResultIncomplete.
	Result  string       `json:"result"`
	Summary Summary      `json:"summary"`
	Rooms   []RoomReport `json:"rooms"`
	Users   []UserReport `json:"users"`
}

// Summary adds up the rooms and users.
type Summary struct {
	Rooms               int `json:"rooms"`
	RoomsOK             int `json:"rooms_ok"`
	RoomsMissing        int `json:"rooms_missing"`
	RoomsStateDiffers   int `json:"rooms_state_differs"`
	RoomsNotJoined      int `json:"rooms_not_joined"`
	RoomsUnsupported    int `json:"rooms_unsupported_version"`
	RoomsNoLocalMembers int `json:"rooms_no_local_members"`
	RoomsError          int `json:"rooms_error"`
	EventsExpected      int `json:"events_expected"`
	EventsArrived       int `json:"events_arrived"`
	EventsMissing       int `json:"events_missing"`
	EventsHidden        int `json:"events_hidden"`
	EventsExtra         int `json:"events_extra"`
	EventsUnservable    int `json:"events_unservable"`
	StateDifferences    int `json:"state_differences"`
	Users               int `json:"users"`
	UsersOK             int `json:"users_ok"`
	UsersDiffer         int `json:"users_differ"`
	UsersMissing        int `json:"users_missing"`
	UsersSkipped        int `json:"users_skipped"`
	UsersError          int `json:"users_error"`
	RoomsWithProblems   int `json:"rooms_with_problems"`
	UsersWithProblems   int `json:"users_with_problems"`
	ElapsedMilliseconds int `json:"elapsed_ms"`
	TargetMessagesPages int `json:"target_messages_pages"`
}

// RoomReport is one room.
type RoomReport struct {
	RoomID      string `json:"room_id"`
	RoomVersion string `json:"room_version"`
	Status      string `json:"status"`
	// AsUser is the local member verify asked the target as.
	AsUser string `json:"as_user,omitempty"`
	// Expected counts the events of the room's timeline the target should hold: every event the
	// source has that its forward extremities reach through prev_events, except unservable ones.
	Expected int `json:"expected"`
	// Arrived counts the expected events the target's /messages showed.
	Arrived int `json:"arrived"`
	// Missing counts expected events not seen, Hidden excepted; MissingIDs lists the oldest ones.
	Missing    int      `json:"missing"`
	MissingIDs []string `json:"missing_ids"`
	// Hidden counts events not seen that Synapse itself holds only redacted (history from before
	// any local user joined, under "joined" or "invited" visibility): no local member may see them.
	Hidden int `json:"hidden"`
	// Extra counts events the target showed that the source does not have (the join made by
	// `shim rejoin`, messages sent on the target since); ExtraIDs lists some.
	Extra    int      `json:"extra"`
	ExtraIDs []string `json:"extra_ids"`
	// Outliers counts source events reached only through auth_events: never in a timeline.
	Outliers int `json:"outliers"`
	// Unservable counts events that failed verification at the shim: it never serves them.
	Unservable int `json:"unservable"`
	// State compares the current state.
	State *StateReport `json:"state,omitempty"`
	// Error says why the room could not be checked, or why it was skipped.
	Error string `json:"error,omitempty"`
}

// StateReport compares a room's current state, piece by piece.
type StateReport struct {
	Compared int `json:"compared"`
	Same     int `json:"same"`
	// Newer counts pieces where the target holds a later event than the source: one the target
	// made itself (the rejoin) or one later in the source's own history.
	Newer int `json:"newer"`
	// Missing are pieces the target does not have; Differs ones where it holds an older or
	// competing event of the source.
	Missing []StateEntry `json:"missing"`
	Differs []StateEntry `json:"differs"`
}

// StateEntry is one piece of state that is missing or differs.
type StateEntry struct {
	Type     string `json:"type"`
	StateKey string `json:"state_key"`
	Expected string `json:"expected"`
	Actual   string `json:"actual,omitempty"`
}

// UserReport is one local user.
type UserReport struct {
	UserID      string `json:"user_id"`
	Status      string `json:"status"`
	Profile     string `json:"profile"`
	Devices     string `json:"devices"`
	AccountData string `json:"account_data"`
	Keys        string `json:"keys"`
	KeyBackup   string `json:"key_backup"`
	// Sessions says whether every exported device has an access token in the target's database
	// (checked only with -conduit-db): a device without one must log in again.
	Sessions string `json:"sessions,omitempty"`
	// Problems name what is missing or differs: device IDs, account data types, key names.
	Problems []string `json:"problems"`
	Error    string   `json:"error,omitempty"`
}

// Problem reports whether a room needs the admin's attention (given -strict).
func (r *RoomReport) Problem(strict bool) bool {
	switch r.Status {
	case RoomOK, RoomNoLocalMembers:
		return false
	case RoomUnsupportedVersion:
		return strict
	}
	return true
}

// Problem reports whether a user needs the admin's attention.
func (u *UserReport) Problem() bool { return u.Status != UserOK && u.Status != UserSkipped }
