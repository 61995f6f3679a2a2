// Package verify compares the old server (Synapse, or its export and the shim's event cache) with
// the new one (Conduit, through its client API as each local user) room by room and user by
// user, and reports what arrived and what was lost, before Synapse is shut down.
package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Defaults of Config.
const (
	DefaultJobs         = 4
	DefaultPageLimit    = 100 // Conduit's own cap of one /messages page
	DefaultMaxListed    = 20
	DefaultMembersToTry = 3
)

// Config is what a verification needs.
type Config struct {
	ServerName string
	Rooms      Rooms  // rooms, their current state and local members
	Events     Events // every event of a room
	Users      Users  // nil: users are not checked
	// Sessions, when set, is the target's database, read for the access tokens the import carried.
	Sessions Sessions
	Target   Target
	// SourceName and TargetURL describe the two sides in the report ("synapse", "export").
	SourceName, TargetURL string
	// Jobs is how many rooms and users are checked at once (default DefaultJobs).
	Jobs int
	// Strict counts rooms of unsupported versions as problems.
	Strict bool
	// PageLimit is the limit of each /messages page (default 100).
	PageLimit int
	// MaxPages bounds the /messages pages of one room (default 100,000).
	MaxPages int
	// MaxListed bounds the IDs listed per room and the problems per user (default 20).
	MaxListed int
	// MembersToTry is how many local members are tried before a room counts as not joined.
	MembersToTry int
	// Progress, when set, is called after each room and user.
	Progress func(Progress)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Progress is how far a run is.
type Progress struct {
	Rooms, RoomsDone int
	Users, UsersDone int
	Problems         int
}

type verifier struct {
	cfg   Config
	pages atomic.Int64
}

func (c *Config) validate() error {
	var errs []error
	if c.Rooms == nil {
		errs = append(errs, errors.New("verify: no room source"))
	}
	if c.Events == nil {
		errs = append(errs, errors.New("verify: no event source"))
	}
	if c.Target == nil {
		errs = append(errs, errors.New("verify: no target"))
	}
	if c.Jobs < 0 {
		errs = append(errs, fmt.Errorf("verify: jobs: %d is negative", c.Jobs))
	}
	return errors.Join(errs...)
}

// Run checks the target against the source. It returns an error only when verification cannot
// start (the target does not answer or refuses the token, the source cannot list rooms or users);
// a room or user that cannot be checked is reported with status "error".
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Jobs == 0 {
		cfg.Jobs = DefaultJobs
	}
	if cfg.PageLimit <= 0 {
		cfg.PageLimit = DefaultPageLimit
	}
	if cfg.MaxPages <= 0 {
		cfg.MaxPages = 100_000
	}
	if cfg.MaxListed <= 0 {
		cfg.MaxListed = DefaultMaxListed
	}
	if cfg.MembersToTry <= 0 {
		cfg.MembersToTry = DefaultMembersToTry
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &verifier{cfg: cfg}
	rep := &Report{Format: ReportFormat, FormatVersion: ReportFormatVersion, ServerName: cfg.ServerName,
		Source: cfg.SourceName, Target: cfg.TargetURL, Strict: cfg.Strict, StartedAt: cfg.Now().UTC(),
		Rooms: []RoomReport{}, Users: []UserReport{}}
	if err := cfg.Target.Check(ctx); err != nil {
		return nil, fmt.Errorf("the target does not answer or refuses the token: %w", err)
	}
	rooms, err := cfg.Rooms.RoomIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the source's rooms: %w", err)
	}
	var users []string
	if cfg.Users != nil {
		if users, err = cfg.Users.UserIDs(ctx); err != nil {
			return nil, fmt.Errorf("listing the source's users: %w", err)
		}
	}
	rep.Rooms = make([]RoomReport, len(rooms))
	rep.Users = make([]UserReport, len(users))

	var mu sync.Mutex
	prog := Progress{Rooms: len(rooms), Users: len(users)}
	done := func(room bool, problem bool) {
		mu.Lock()
		defer mu.Unlock()
		if room {
			prog.RoomsDone++
		} else {
			prog.UsersDone++
		}
		if problem {
			prog.Problems++
		}
		if cfg.Progress != nil {
			cfg.Progress(prog)
		}
	}
	var g errgroup.Group
	g.SetLimit(cfg.Jobs)
	for i := range len(rooms) + len(users) {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil
			}
			if i < len(rooms) {
				rep.Rooms[i] = v.loadAndCheckRoom(ctx, rooms[i])
				done(true, rep.Rooms[i].Problem(cfg.Strict))
			} else {
				u := &rep.Users[i-len(rooms)]
				*u = v.checkUser(ctx, users[i-len(rooms)])
				done(false, u.Problem())
			}
			return nil // each check reports in its report
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.FinishedAt = cfg.Now().UTC()
	rep.Summary = v.summarise(rep)
	return rep, nil
}

func (v *verifier) summarise(rep *Report) Summary {
	s := Summary{Rooms: len(rep.Rooms), Users: len(rep.Users), TargetMessagesPages: int(v.pages.Load()),
		ElapsedMilliseconds: int(rep.FinishedAt.Sub(rep.StartedAt).Milliseconds())}
	incomplete := false
	for i := range rep.Rooms {
		r := &rep.Rooms[i]
		switch r.Status {
		case RoomOK:
			s.RoomsOK++
		case RoomMissing:
			s.RoomsMissing++
		case RoomStateDiffers:
			s.RoomsStateDiffers++
		case RoomNotJoined:
			s.RoomsNotJoined++
		case RoomUnsupportedVersion:
			s.RoomsUnsupported++
		case RoomNoLocalMembers:
			s.RoomsNoLocalMembers++
		case RoomError:
			s.RoomsError++
			incomplete = true
		}
		if r.Problem(rep.Strict) {
			s.RoomsWithProblems++
		}
		s.EventsExpected += r.Expected
		s.EventsArrived += r.Arrived
		s.EventsMissing += r.Missing
		s.EventsHidden += r.Hidden
		s.EventsExtra += r.Extra
		s.EventsUnservable += r.Unservable
		if r.State != nil {
			s.StateDifferences += len(r.State.Missing) + len(r.State.Differs)
		}
	}
	for i := range rep.Users {
		u := &rep.Users[i]
		switch u.Status {
		case UserOK:
			s.UsersOK++
		case UserDiffers:
			s.UsersDiffer++
		case UserMissing:
			s.UsersMissing++
		case UserSkipped:
			s.UsersSkipped++
		case UserError:
			s.UsersError++
			incomplete = true
		}
		if u.Problem() {
			s.UsersWithProblems++
		}
	}
	switch {
	case incomplete:
		rep.Result = ResultIncomplete
	case s.RoomsWithProblems+s.UsersWithProblems > 0:
		rep.Result = ResultMissing
	default:
		rep.Result = ResultOK
	}
	return s
}
