package world

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Relations a planned event can have to an earlier event of its room.
const (
	relNone = iota
	relRedact
	relReplace
	relReply
	relReaction
)

// planEvent is an event decided before any event ID exists; references to
// other events are indexes into the room's plan.
type planEvent struct {
	typ        string
	stateKey   *string
	sender     string
	origin     string
	content    map[string]any
	membership string
	prev       []int
	relKind    int
	relTarget  int
	v1ID       string // room version 1 only
	ts, stream int64
	oldKey     bool
}

// roomPlan scripts one room: its events, current extremities and the
// membership/power bookkeeping needed to pick valid senders.
type roomPlan struct {
	g       *gen
	room    *Room
	rng     *rand.Rand
	evs     []*planEvent
	ext     []int
	members map[string]string
	order   []string // users who ever had a membership, in first-seen order
	pl      map[string]int
	// creators are the room's creators (the create event's sender and additional_creators): in
	// version 12 they have infinite power and are left out of m.room.power_levels.
	creators map[string]bool
	msgs     []int // indexes of plain messages that may be edited/redacted
	counter  int
	// firstLocalJoin is the index of the first join of a local user, -1 if none.
	firstLocalJoin int
	sessions       []string // megolm session IDs used in the room
}

func strp(s string) *string { return &s }

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
const alnum = letters + "0123456789"

func randString(rng *rand.Rand, n int, alphabet string) string {
	var b strings.Builder
	b.Grow(n)
	for range n {
		b.WriteByte(alphabet[rng.IntN(len(alphabet))])
	}
	return b.String()
}

func serverOf(id string) string {
	if i := strings.IndexByte(id, ':'); i >= 0 {
		return id[i+1:]
	}
	return ""
}

func localpartOf(id string) string {
	if i := strings.IndexByte(id, ':'); i > 0 {
		return id[1:i]
	}
	return id
}

// newRoomPlan starts a room with its own random stream so that rooms can be
// planned and built independently.
func (g *gen) newRoomPlan(kind, version, creator string) *roomPlan {
	rng := rand.New(rand.NewPCG(g.opts.Seed, 0x526f6f6d+uint64(len(g.plans))))
	id := "!" + randString(rng, 18, letters) + ":" + serverOf(creator)
	if domainlessVersion(version) {
		id = "" // the create event's reference hash, known once it is built
	}
	if g.opts.HostileIDs && kind == KindOrdinary && id != "" {
		if k := len(g.plans) - 3; k >= 0 && k < len(hostileRoomParts) { // the first extra rooms
			id = "!" + hostileRoomParts[k] + id[1:]
		}
	}
	r := &Room{
		ID:      id,
		Version: version,
		Kind:    kind,
		Creator: creator,
	}
	p := &roomPlan{g: g, room: r, rng: rng, members: map[string]string{}, pl: map[string]int{}, firstLocalJoin: -1,
		creators: map[string]bool{creator: true}}
	g.plans = append(g.plans, p)
	return p
}

// add appends an event whose prev_events are the current extremities.
func (p *roomPlan) add(pe *planEvent) int {
	pe.prev = append([]int(nil), p.ext...)
	return p.addWithPrev(pe)
}

func (p *roomPlan) addWithPrev(pe *planEvent) int {
	pe.origin = serverOf(pe.sender)
	if pe.relKind == relNone {
		pe.relTarget = -1
	}
	if p.room.Version == "1" {
		pe.v1ID = "$" + randString(p.rng, 18, alnum) + ":" + pe.origin
	}
	p.evs = append(p.evs, pe)
	i := len(p.evs) - 1
	p.ext = []int{i}
	return i
}

func (p *roomPlan) state(sender, typ, key string, content map[string]any) int {
	return p.add(&planEvent{typ: typ, stateKey: strp(key), sender: sender, content: content})
}

func (p *roomPlan) member(sender, target, membership string) int {
	c := map[string]any{"membership": membership}
	if membership == "join" {
		if prof, ok := p.g.profiles[target]; ok {
			c["displayname"] = prof.DisplayName
			if prof.AvatarURL != "" {
				c["avatar_url"] = prof.AvatarURL
			}
		}
	}
	if _, seen := p.members[target]; !seen {
		p.order = append(p.order, target)
	}
	p.members[target] = membership
	i := p.add(&planEvent{typ: "m.room.member", stateKey: strp(target), sender: sender, content: c, membership: membership})
	if membership == "join" && p.firstLocalJoin < 0 && serverOf(target) == p.g.opts.ServerName {
		p.firstLocalJoin = i
	}
	return i
}

func (p *roomPlan) joined() []string {
	var out []string
	for _, u := range p.order {
		if p.members[u] == "join" {
			out = append(out, u)
		}
	}
	return out
}

func (p *roomPlan) pick(users []string) string { return users[p.rng.IntN(len(users))] }

// roomConfig is what the room creation preset sets up.
type roomConfig struct {
	name, topic, alias  string
	joinRule, histVis   string
	guestAccess, public bool
	encrypted           bool
	// additionalCreators go into the create event's additional_creators (version 12 only).
	additionalCreators []string
}

func (p *roomPlan) powerLevelsContent() map[string]any {
	users := map[string]any{}
	for u, l := range p.pl {
		if !p.room.DomainlessIDs() || !p.creators[u] {
			users[u] = l
		}
	}
	tombstone := 100
	if p.room.DomainlessIDs() {
		tombstone = 150 // Synapse's presets: above every user who is not a creator
	}
	return map[string]any{
		"users":          users,
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         0,
		"historical":     100,
		"events": map[string]any{
			"m.room.name":               50,
			"m.room.power_levels":       100,
			"m.room.history_visibility": 100,
			"m.room.canonical_alias":    50,
			"m.room.avatar":             50,
			"m.room.tombstone":          tombstone,
			"m.room.server_acl":         100,
			"m.room.encryption":         100,
		},
		"notifications": map[string]any{"room": 50},
	}
}

// create writes the events Synapse's createRoom writes, in its order.
func (p *roomPlan) create(cfg roomConfig) {
	r, c := p.room, p.room.Creator
	content := map[string]any{"room_version": r.Version}
	if r.Version != "11" && !r.DomainlessIDs() {
		content["creator"] = c
	}
	if len(cfg.additionalCreators) > 0 {
		r.AdditionalCreators = cfg.additionalCreators
		content["additional_creators"] = cfg.additionalCreators
		for _, u := range cfg.additionalCreators {
			p.creators[u] = true
			p.pl[u] = 100
		}
	}
	p.state(c, "m.room.create", "", content)
	p.member(c, c, "join")
	p.pl[c] = 100
	p.state(c, "m.room.power_levels", "", p.powerLevelsContent())
	if cfg.alias != "" {
		alias := "#" + cfg.alias + ":" + serverOf(c)
		r.Aliases = []string{alias}
		r.CanonicalAlias = alias
		p.state(c, "m.room.canonical_alias", "", map[string]any{"alias": alias})
	}
	r.JoinRule = cfg.joinRule
	p.state(c, "m.room.join_rules", "", map[string]any{"join_rule": cfg.joinRule})
	r.HistoryVisibility = cfg.histVis
	p.state(c, "m.room.history_visibility", "", map[string]any{"history_visibility": cfg.histVis})
	if cfg.guestAccess {
		p.state(c, "m.room.guest_access", "", map[string]any{"guest_access": "can_join"})
	}
	if cfg.encrypted {
		r.Encrypted = true
		p.state(c, "m.room.encryption", "", map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": 604800000, "rotation_period_msgs": 100})
	}
	if cfg.name != "" {
		r.Name = cfg.name
		p.state(c, "m.room.name", "", map[string]any{"name": cfg.name})
	}
	if cfg.topic != "" {
		r.Topic = cfg.topic
		p.state(c, "m.room.topic", "", map[string]any{"topic": cfg.topic})
	}
	r.IsPublic = cfg.public
}

// enter makes user a member: directly for public rooms, else invited by inviter first.
func (p *roomPlan) enter(inviter, user string) int {
	if p.room.JoinRule != "public" || p.members[user] == "invite" {
		if p.members[user] != "invite" {
			p.member(inviter, user, "invite")
		}
	}
	return p.member(user, user, "join")
}

func (p *roomPlan) message(sender string) int {
	p.counter++
	if p.room.Encrypted {
		i := p.add(&planEvent{typ: "m.room.encrypted", sender: sender, content: p.encryptedContent(sender)})
		p.msgs = append(p.msgs, i)
		return i
	}
	words := []string{"hello", "lunch?", "ship it", "see the doc", "on my way", "LGTM", "brb", "which room?", "nice", "thanks!"}
	body := fmt.Sprintf("message %d from %s: %s", p.counter, localpartOf(sender), words[p.rng.IntN(len(words))])
	i := p.add(&planEvent{typ: "m.room.message", sender: sender, content: map[string]any{"msgtype": "m.text", "body": body}})
	p.msgs = append(p.msgs, i)
	return i
}

func (p *roomPlan) encryptedContent(sender string) map[string]any {
	if len(p.sessions) == 0 || p.rng.IntN(10) == 0 {
		p.sessions = append(p.sessions, randString(p.rng, 43, alnum+"+/"))
	}
	sess := p.sessions[len(p.sessions)-1]
	return map[string]any{
		"algorithm":  "m.megolm.v1.aes-sha2",
		"ciphertext": randString(p.rng, 96, alnum+"+/"),
		"device_id":  p.g.deviceIDOf(sender),
		"sender_key": randString(p.rng, 43, alnum+"+/"),
		"session_id": sess,
	}
}

// ownMessage picks an earlier message whose sender is still joined.
func (p *roomPlan) ownMessage() (int, bool) {
	for range 8 {
		if len(p.msgs) == 0 {
			return 0, false
		}
		k := p.rng.IntN(len(p.msgs))
		i := p.msgs[k]
		if p.members[p.evs[i].sender] == "join" {
			return i, true
		}
	}
	return 0, false
}

func (p *roomPlan) edit() bool {
	if p.room.Encrypted {
		return false
	}
	t, ok := p.ownMessage()
	if !ok {
		return false
	}
	s := p.evs[t].sender
	body := fmt.Sprintf("edited: %v", p.evs[t].content["body"])
	p.add(&planEvent{typ: "m.room.message", sender: s, relKind: relReplace, relTarget: t, content: map[string]any{
		"msgtype":       "m.text",
		"body":          "* " + body,
		"m.new_content": map[string]any{"msgtype": "m.text", "body": body},
	}})
	return true
}

func (p *roomPlan) redact() bool {
	t, ok := p.ownMessage()
	if !ok {
		return false
	}
	for k, i := range p.msgs {
		if i == t {
			p.msgs = append(p.msgs[:k:k], p.msgs[k+1:]...)
			break
		}
	}
	p.add(&planEvent{typ: "m.room.redaction", sender: p.evs[t].sender, relKind: relRedact, relTarget: t, content: map[string]any{"reason": "oops"}})
	return true
}

func (p *roomPlan) react() bool {
	if len(p.msgs) == 0 {
		return false
	}
	t := p.msgs[p.rng.IntN(len(p.msgs))]
	keys := []string{"👍", "🎉", "😂", "❤️"}
	p.add(&planEvent{typ: "m.reaction", sender: p.pick(p.joined()), relKind: relReaction, relTarget: t,
		content: map[string]any{"key": keys[p.rng.IntN(len(keys))]}})
	return true
}

func (p *roomPlan) reply() bool {
	if len(p.msgs) == 0 || p.room.Encrypted {
		return false
	}
	t := p.msgs[p.rng.IntN(len(p.msgs))]
	p.counter++
	i := p.add(&planEvent{typ: "m.room.message", sender: p.pick(p.joined()), relKind: relReply, relTarget: t,
		content: map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("reply %d", p.counter)}})
	p.msgs = append(p.msgs, i)
	return true
}

func (p *roomPlan) powerful() []string {
	var out []string
	for _, u := range p.joined() {
		if p.pl[u] >= 50 {
			out = append(out, u)
		}
	}
	return out
}

func (p *roomPlan) changeTopic() bool {
	ps := p.powerful()
	if len(ps) == 0 {
		return false
	}
	p.counter++
	t := fmt.Sprintf("Topic #%d", p.counter)
	p.room.Topic = t
	p.state(p.pick(ps), "m.room.topic", "", map[string]any{"topic": t})
	return true
}

// promote raises a joined member without power to moderator (50).
func (p *roomPlan) promote() bool {
	var admins, cands []string
	for _, u := range p.joined() {
		switch {
		case p.pl[u] >= 100:
			admins = append(admins, u)
		case p.pl[u] < 50:
			cands = append(cands, u)
		}
	}
	if len(admins) == 0 || len(cands) == 0 {
		return false
	}
	p.pl[p.pick(cands)] = 50
	p.state(p.pick(admins), "m.room.power_levels", "", p.powerLevelsContent())
	return true
}

// fork writes two messages on the same prev event (same depth) and, unless
// leaveOpen, a message merging them.
func (p *roomPlan) fork(leaveOpen bool) bool {
	js := p.joined()
	if len(js) < 2 {
		return false
	}
	base := append([]int(nil), p.ext...)
	a := p.message(js[0])
	p.ext = base
	b := p.message(js[1])
	p.ext = []int{a, b}
	if !leaveOpen {
		p.message(p.pick(js))
	}
	return true
}

// longFork writes two branches of n messages each from the current extremities, one by a and
// one by b (a netsplit), then a message by b whose prev_events are both branches' ends.
func (p *roomPlan) longFork(a, b string, n int) {
	base := append([]int(nil), p.ext...)
	for range n {
		p.message(a)
	}
	endA := p.ext[0]
	p.ext = base
	for range n {
		p.message(b)
	}
	p.ext = []int{endA, p.ext[0]}
	p.message(b)
}

// churn makes a non-admin member leave and come back.
func (p *roomPlan) churn() bool {
	var cands []string
	for _, u := range p.joined() {
		if p.pl[u] < 100 && p.g.isActive(u) {
			cands = append(cands, u)
		}
	}
	if len(cands) == 0 {
		return false
	}
	u := p.pick(cands)
	p.member(u, u, "leave")
	p.enter(p.room.Creator, u)
	return true
}

// activity writes about n events of ordinary room life; with guaranteed set,
// every kind (edit, redaction, topic and power-level change, fork) appears.
func (p *roomPlan) activity(n int, guaranteed bool) {
	start := len(p.evs)
	must := []func() bool{p.promote, p.changeTopic, p.edit, p.redact, func() bool { return p.fork(false) }, p.react, p.reply}
	next := 0
	for len(p.evs)-start < n {
		done := len(p.evs) - start
		if guaranteed && next < len(must) && done >= (next+1)*n/(len(must)+2) {
			if must[next]() {
				next++
				continue
			}
		}
		x := p.rng.Float64()
		ok := false
		switch {
		case x < 0.04:
			ok = p.edit()
		case x < 0.06:
			ok = p.redact()
		case x < 0.08:
			ok = p.react()
		case x < 0.10:
			ok = p.reply()
		case x < 0.11:
			ok = p.changeTopic()
		case x < 0.115:
			ok = p.fork(false)
		case x < 0.12:
			ok = p.churn()
		}
		if !ok {
			js := p.joined()
			p.message(p.pick(js))
		}
	}
}
