package world

import (
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
)

// gen carries the generator's state between its phases: keys and users,
// room scripts, scheduling, concurrent building, then per-user data.
type gen struct {
	opts     Options
	rng      *rand.Rand
	w        *World
	plans    []*roomPlan
	profiles map[string]Profile // local and remote users
	active   map[string]bool    // local users that can act (not deactivated)
	byName   map[string]*User   // fixed users by localpart
	extras   []*User
	remote   []string
	dm       *roomPlan
	lobby    *roomPlan
	secret   *roomPlan
}

// Generate builds a world from opts; the same options always give the same bytes.
func Generate(opts Options) (*World, error) {
	opts = opts.withDefaults()
	g := &gen{
		opts:     opts,
		rng:      rand.New(rand.NewPCG(opts.Seed, 0x576f726c64)),
		profiles: map[string]Profile{},
		active:   map[string]bool{},
		byName:   map[string]*User{},
	}
	g.w = &World{ServerName: opts.ServerName, RemoteServerName: opts.RemoteServerName, Aliases: map[string]string{}}
	g.w.SigningKey = g.serverKey(opts.ServerName)
	g.w.RemoteKey = g.serverKey(opts.RemoteServerName)
	if opts.OldKeyEvents > 0 {
		g.w.OldKeys = []OldKey{{ServerKey: g.serverKey(opts.ServerName)}}
	}
	if err := g.makeUsers(); err != nil {
		return nil, err
	}
	g.planRooms()
	g.schedule()
	if err := g.buildRooms(); err != nil {
		return nil, err
	}
	g.index()
	if err := g.userData(); err != nil {
		return nil, err
	}
	if err := g.sessionsAndMedia(); err != nil {
		return nil, err
	}
	return g.w, nil
}

func (g *gen) seed32() []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

func (g *gen) serverKey(server string) ServerKey {
	priv := ed25519.NewKeyFromSeed(g.seed32())
	return ServerKey{
		ServerName: server,
		KeyID:      "ed25519:a_" + randString(g.rng, 4, letters),
		Private:    priv,
		Public:     priv.Public().(ed25519.PublicKey),
	}
}

func (g *gen) local(lp string) string { return "@" + lp + ":" + g.opts.ServerName }

func (g *gen) isActive(u string) bool {
	if serverOf(u) != g.opts.ServerName {
		return true
	}
	return g.active[u]
}

func (g *gen) humans() []string {
	out := []string{g.local("alice"), g.local("bob"), g.local("carol"), g.local("erin")}
	for _, u := range g.extras {
		out = append(out, u.ID)
	}
	return out
}

// planRooms scripts every room: first the setup of all rooms, then activity
// sized to the event budget, then endings.
func (g *gen) planRooms() {
	alice, bob, carol, dave, erin := g.local("alice"), g.local("bob"), g.local("carol"), g.local("dave"), g.local("erin")
	admin, bot := g.local("admin"), g.local("helper-bot")
	rita, rob, ruth := g.remote[0], g.remote[1], g.remote[2]
	var busy []*roomPlan

	p := g.newRoomPlan(KindOrdinary, "10", alice)
	p.create(roomConfig{joinRule: "invite", histVis: "shared", guestAccess: true})
	p.enter(alice, bob)
	g.dm = p
	busy = append(busy, p)

	p = g.newRoomPlan(KindOrdinary, "11", alice)
	p.create(roomConfig{name: "Lobby", topic: "Say hi", alias: "lobby", joinRule: "public", histVis: "shared", public: true})
	for _, u := range append([]string{bob, carol, dave, erin, admin, bot}, g.extraIDs()...) {
		p.enter(alice, u)
	}
	g.lobby = p
	busy = append(busy, p)

	p = g.newRoomPlan(KindOrdinary, "10", carol)
	p.create(roomConfig{name: "Secrets", joinRule: "invite", histVis: "shared", guestAccess: true, encrypted: true})
	p.enter(carol, alice)
	p.enter(carol, bob)
	g.secret = p
	busy = append(busy, p)

	versions := []string{"6", "11", "10"}
	vis := []string{"world_readable", "invited", "shared"}
	for i := range g.opts.Rooms {
		hs := g.humans()
		creator := hs[g.rng.IntN(len(hs))]
		p = g.newRoomPlan(KindOrdinary, versions[i%3], creator)
		cfg := roomConfig{name: fmt.Sprintf("Room %d", i+1), topic: fmt.Sprintf("Extra room %d", i+1), histVis: vis[i%3], joinRule: "invite"}
		if i%2 == 1 {
			cfg.joinRule, cfg.public, cfg.alias = "public", true, fmt.Sprintf("room%d", i+1)
		}
		p.create(cfg)
		for _, u := range hs {
			if u != creator && (p.rng.IntN(2) == 0 || len(p.joined()) < 2) {
				p.enter(creator, u)
			}
		}
		busy = append(busy, p)
	}

	if !g.opts.NoV1Room {
		p = g.newRoomPlan(KindV1, "1", alice)
		p.create(roomConfig{name: "Old v1 room", joinRule: "invite", histVis: "shared"})
		p.enter(alice, bob)
		busy = append(busy, p)
	}

	remoteMembers := g.newRoomPlan(KindRemoteMembers, "10", bob)
	remoteMembers.create(roomConfig{name: "Federated", alias: "federated", joinRule: "public", histVis: "shared", public: true})
	for _, u := range []string{rita, alice, rob, ruth} {
		remoteMembers.enter(bob, u)
	}
	busy = append(busy, remoteMembers)

	p = g.newRoomPlan(KindAllLeft, "6", alice)
	p.create(roomConfig{name: "Abandoned", joinRule: "invite", histVis: "shared"})
	p.enter(alice, bob)
	for range 5 {
		p.message(p.pick(p.joined()))
	}
	p.member(bob, bob, "leave")
	p.member(alice, alice, "leave")

	p = g.newRoomPlan(KindJoinedVisibility, "11", rita)
	p.create(roomConfig{name: "Remote members only history", topic: "before you came", joinRule: "public", histVis: "joined"})
	p.enter(rita, rob)
	for range 8 {
		p.message(p.pick(p.joined()))
	}
	p.changeTopic()
	p.enter(rita, alice)
	p.enter(rita, bob)
	p.activity(min(g.opts.MessagesPerRoom, 15), false)

	for i := range g.opts.V12Rooms {
		busy = append(busy, g.planV12Room(i))
	}

	n := g.opts.MessagesPerRoom
	if g.opts.TotalEvents > 0 {
		planned := 0
		for _, q := range g.plans {
			planned += len(q.evs)
		}
		n = max(0, (g.opts.TotalEvents-planned+len(busy)-1)/len(busy))
	}
	for _, q := range busy {
		q.activity(n, true)
	}
	if g.opts.BigRoomActivity > 0 {
		g.lobby.activity(g.opts.BigRoomActivity, true)
	}

	if g.opts.LongForkLength > 0 {
		remoteMembers.longFork(rita, bob, g.opts.LongForkLength)
	}
	g.lobby.member(dave, dave, "leave") // deactivation parts the user
	remoteMembers.fork(true)            // two forward extremities remain
}

// planV12Room sets up the i-th room of version 12: the first is public, created by alice with bob
// as an additional creator, and has a remote member; the others are invite-only rooms of carol's.
func (g *gen) planV12Room(i int) *roomPlan {
	alice, bob, carol, erin := g.local("alice"), g.local("bob"), g.local("carol"), g.local("erin")
	if i == 0 {
		p := g.newRoomPlan(KindOrdinary, "12", alice)
		p.create(roomConfig{name: "Version 12", topic: "creators above power levels", alias: "v12", joinRule: "public",
			histVis: "shared", public: true, additionalCreators: []string{bob}})
		for _, u := range []string{bob, carol, g.remote[0], erin} {
			p.enter(alice, u)
		}
		return p
	}
	p := g.newRoomPlan(KindOrdinary, "12", carol)
	p.create(roomConfig{name: fmt.Sprintf("Version 12 room %d", i+1), joinRule: "invite", histVis: "shared"})
	p.enter(carol, alice)
	p.enter(carol, erin)
	return p
}

func (g *gen) extraIDs() []string {
	var out []string
	for _, u := range g.extras {
		out = append(out, u.ID)
	}
	return out
}

// schedule interleaves the rooms' events into one timeline, assigning
// timestamps, stream orderings and the signing key of each event.
func (g *gen) schedule() {
	remaining := make([]int, len(g.plans))
	next := make([]int, len(g.plans))
	total := 0
	for i, p := range g.plans {
		remaining[i] = len(p.evs)
		total += len(p.evs)
	}
	ts := g.opts.BaseTime.UnixMilli()
	var stream int64
	localSeen := 0
	expiry := int64(0)
	for left := total; left > 0; left-- {
		x := g.rng.IntN(left)
		i := 0
		for ; x >= remaining[i]; i++ {
			x -= remaining[i]
		}
		pe := g.plans[i].evs[next[i]]
		next[i]++
		remaining[i]--
		ts += 1 + int64(g.rng.IntN(1500))
		stream++
		pe.ts, pe.stream = ts, stream
		if pe.origin == g.opts.ServerName && g.opts.OldKeyEvents > 0 {
			if localSeen < g.opts.OldKeyEvents {
				pe.oldKey = true
			} else if expiry == 0 {
				expiry = ts
			}
			localSeen++
		}
	}
	if len(g.w.OldKeys) > 0 {
		if expiry == 0 {
			expiry = ts + 1
		}
		g.w.OldKeys[0].ExpiredTS = expiry
	}
	// Events Synapse got by backfilling (before it joined) have negative stream orderings.
	for _, p := range g.plans {
		if p.room.Kind != KindJoinedVisibility || p.firstLocalJoin < 0 {
			continue
		}
		for i := 0; i < p.firstLocalJoin; i++ {
			p.evs[i].stream = -int64(p.firstLocalJoin - i)
		}
	}
}

// buildRooms signs every room's events, rooms in parallel; each room only
// reads its own plan, so the result does not depend on scheduling.
func (g *gen) buildRooms() error {
	workers := g.opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	errs := make([]error, len(g.plans))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				errs[i] = g.buildRoom(g.plans[i])
			}
		}()
	}
	for i := range g.plans {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("room %d (%s): %w", i, g.plans[i].room.Kind, err)
		}
	}
	return nil
}

func (g *gen) index() {
	w := g.w
	w.usersByID = map[string]*User{}
	for _, u := range w.Users {
		w.usersByID[u.ID] = u
	}
	w.roomsByID = map[string]*Room{}
	n := 0
	for _, p := range g.plans {
		w.Rooms = append(w.Rooms, p.room)
		w.roomsByID[p.room.ID] = p.room
		n += len(p.room.Events)
		for _, a := range p.room.Aliases {
			if serverOf(a) == w.ServerName {
				w.Aliases[a] = p.room.ID
			}
		}
	}
	w.eventsByID = make(map[string]*Event, n)
	for _, r := range w.Rooms {
		for _, e := range r.Events {
			w.eventsByID[e.ID] = e
		}
	}
}
