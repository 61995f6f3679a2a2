package world

import "time"

// Options control what Generate builds; the zero value gives a small default world.
type Options struct {
	Seed             uint64
	ServerName       string // default "synapse.test"
	RemoteServerName string // default "remote.test"
	// Rooms is the number of extra ordinary rooms beyond the fixed ones (default 2; -1 for none).
	Rooms int
	// MessagesPerRoom is the activity (messages, edits, redactions, ...) per
	// busy room (default 20). Ignored when TotalEvents is set.
	MessagesPerRoom int
	// TotalEvents, if > 0, spreads activity over the busy rooms so that the
	// world holds at least this many events.
	TotalEvents int
	// BigRoomActivity, if > 0, adds this much more activity to the lobby room, making one room
	// far bigger than the others (e.g. 20,000 events for the shim's acceptance test).
	BigRoomActivity int
	// Users is the number of ordinary users beyond the fixed ones (default 3; -1 for none).
	Users int
	// BaseTime is the origin_server_ts of the first event (default 2025-01-01T00:00:00Z).
	BaseTime time.Time
	// PasswordCost is the bcrypt cost of password hashes (default 4).
	PasswordCost int
	// OldKeyEvents, if > 0, signs the first OldKeyEvents local events with a
	// key that is rotated out afterwards (World.OldKeys).
	OldKeyEvents int
	// HostileIDs adds users and extra rooms whose IDs hold what a file name must not: "/", "..",
	// "\\", upper case, non-ASCII letters, 255-byte localparts (for exporters' path handling).
	HostileIDs bool
	// Workers bounds how many rooms are built concurrently (default GOMAXPROCS);
	// the output does not depend on it.
	Workers int
	// NoV1Room leaves out the room of version 1 (KindV1), giving a world with no room a Conduit
	// cannot host. The other rooms then get different IDs and events than without it.
	NoV1Room bool
	// LongForkLength, if > 0, gives the room of remote members (KindRemoteMembers) a netsplit: two
	// branches of this many messages each from the same event, one sent by a remote user, one by a
	// local user, then one local message merging them (two prev_events).
	LongForkLength int
	// V12Rooms adds this many rooms of version 12 after all the others (room ID from the create
	// event's reference hash, creators outside the power levels); the first has an additional
	// creator and a remote member. The rooms before them keep their IDs.
	V12Rooms int
}

func (o Options) withDefaults() Options {
	if o.ServerName == "" {
		o.ServerName = "synapse.test"
	}
	if o.RemoteServerName == "" {
		o.RemoteServerName = "remote.test"
	}
	switch {
	case o.Rooms == 0:
		o.Rooms = 2
	case o.Rooms < 0:
		o.Rooms = 0
	}
	switch {
	case o.Users == 0:
		o.Users = 3
	case o.Users < 0:
		o.Users = 0
	}
	if o.MessagesPerRoom <= 0 {
		o.MessagesPerRoom = 20
	}
	if o.BaseTime.IsZero() {
		o.BaseTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if o.PasswordCost == 0 {
		o.PasswordCost = 4
	}
	return o
}
