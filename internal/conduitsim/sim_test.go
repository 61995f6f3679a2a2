package conduitsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

const asToken = "as_token_for_tests"

type bed struct {
	w    *world.World
	shim *WorldPeer
	sim  *Server
}

func newBed(t *testing.T, o world.Options) *bed {
	t.Helper()
	w, err := world.Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	b := &bed{w: w}
	sim := Start(t, Options{World: w, ShimURL: "placeholder", ASToken: asToken})
	b.shim, sim.opts.ShimURL = StartWorldPeer(t, w, sim.id)
	b.sim = sim
	return b
}

// call sends a client request as user (masquerading with the as_token) and decodes the answer.
func (b *bed) call(t *testing.T, method, path, user string, out any) (int, string) {
	t.Helper()
	u := b.sim.URL + path
	if user != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u += sep + "user_id=" + url.QueryEscape(user)
	}
	req, _ := http.NewRequest(method, u, nil)
	req.Header.Set("Authorization", "Bearer "+asToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode, string(body)
}

// hostable are the rooms a Conduit can join through the shim: a local user is joined, version ≥ 3.
func hostable(w *world.World) []*world.Room {
	var out []*world.Room
	for _, r := range w.Rooms {
		if r.LocalJoinedNow() && r.Version != "1" && r.Version != "2" {
			out = append(out, r)
		}
	}
	return out
}

// localMember is a local user joined to the room now.
func localMember(w *world.World, r *world.Room) string {
	for _, u := range r.JoinedMembers() {
		if w.User(u) != nil {
			return u
		}
	}
	return ""
}

func (b *bed) join(t *testing.T, r *world.Room, user string) {
	t.Helper()
	status, body := b.call(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(r.ID)+"?server_name="+b.w.ServerName, user, nil)
	if status != http.StatusOK {
		t.Fatalf("join %s (v%s, %s) as %s: %d %s", r.ID, r.Version, r.Kind, user, status, body)
	}
}

type messagesPage struct {
	Start string            `json:"start"`
	End   *string           `json:"end"`
	Chunk []json.RawMessage `json:"chunk"`
}

// paginate pages /messages back until m.room.create arrives or a page is empty; it checks that a
// page starting within the held events causes no /backfill.
func (b *bed) paginate(t *testing.T, roomID, user string, limit int) (ids []string, reachedCreate bool) {
	t.Helper()
	from := ""
	for pages := 0; pages < 10_000; pages++ {
		var p messagesPage
		q := "?dir=b&limit=" + strconv.Itoa(limit)
		if from != "" {
			q += "&from=" + from
		}
		before := b.sim.Requests()["fed.backfill"]
		oldestBefore := int64(0)
		if info, ok := b.sim.Room(roomID); ok && len(info.Timeline) > 0 {
			oldestBefore = b.sim.heldRoom(roomID).oldestPos()
		}
		status, body := b.call(t, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages"+q, user, &p)
		if status != http.StatusOK {
			t.Fatalf("messages: %d %s", status, body)
		}
		asked := b.sim.Requests()["fed.backfill"] - before
		if from != "" {
			n, _ := strconv.ParseInt(from, 10, 64)
			if oldestBefore < n && asked != 0 {
				t.Fatalf("page from %s with older events held (oldest %d) sent %d /backfill", from, oldestBefore, asked)
			}
			if _, cut := b.sim.faults.cutAt(roomID); oldestBefore >= n && asked != 1 && !cut {
				t.Fatalf("page from %s reaching the oldest event sent %d /backfill, want 1", from, asked)
			}
		}
		for _, raw := range p.Chunk {
			var ev struct {
				EventID string `json:"event_id"`
				Type    string `json:"type"`
			}
			_ = json.Unmarshal(raw, &ev)
			ids = append(ids, ev.EventID)
			if ev.Type == "m.room.create" {
				reachedCreate = true
			}
		}
		if reachedCreate || p.End == nil {
			return ids, reachedCreate
		}
		from = *p.End
	}
	t.Fatal("no end")
	return nil, false
}

func (rm *room) oldestPos() int64 {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.oldest().pos
}

func worldIDs(r *world.Room) []string {
	var ids []string
	for _, e := range r.Events {
		ids = append(ids, e.ID)
	}
	return ids
}

func TestJoinThenPaginateEveryRoom(t *testing.T) {
	b := newBed(t, world.Options{Seed: 3, MessagesPerRoom: 120, OldKeyEvents: 5, V12Rooms: 1})
	rooms := hostable(b.w)
	if len(rooms) < 4 || !slices.ContainsFunc(rooms, func(r *world.Room) bool { return r.Version == "12" }) {
		t.Fatalf("only %d hostable rooms, or none of version 12", len(rooms))
	}
	for _, r := range rooms {
		user := localMember(b.w, r)
		b.join(t, r, user)
		info, ok := b.sim.Room(r.ID)
		if !ok || len(info.Timeline) != 1 || info.Version != r.Version {
			t.Fatalf("room %s after the join: %+v", r.ID, info)
		}
		joinID := info.Timeline[0]
		// The state is the world's current state with the joiner's member event replaced by the join.
		want := r.CurrentState().Map()
		want[world.StateKey{Type: "m.room.member", StateKey: user}] = joinID
		var wantIDs []string
		for _, id := range want {
			wantIDs = append(wantIDs, id)
		}
		slices.Sort(wantIDs)
		if !slices.Equal(info.State, wantIDs) {
			t.Fatalf("room %s: state of %d events, want %d", r.ID, len(info.State), len(wantIDs))
		}
		var jr struct {
			JoinedRooms []string `json:"joined_rooms"`
		}
		b.call(t, "GET", "/_matrix/client/v3/joined_rooms", user, &jr)
		if !slices.Contains(jr.JoinedRooms, r.ID) {
			t.Fatalf("joined_rooms of %s lacks %s", user, r.ID)
		}

		ids, reached := b.paginate(t, r.ID, user, 30)
		if !reached {
			t.Fatalf("room %s (%s): m.room.create not reached after %d events", r.ID, r.Kind, len(ids))
		}
		got := slices.Clone(ids)
		slices.Sort(got)
		wantAll := append(worldIDs(r), joinID)
		slices.Sort(wantAll)
		if !slices.Equal(got, wantAll) {
			t.Fatalf("room %s (%s): %d events arrived, want %d", r.ID, r.Kind, len(got), len(wantAll))
		}
		if ids[0] != joinID {
			t.Fatalf("room %s: the newest event is %s, not the join", r.ID, ids[0])
		}
		// Conduit does not stop at m.room.create: paging past it asks again and brings nothing.
		before := b.sim.Requests()["fed.backfill"]
		info, _ = b.sim.Room(r.ID)
		var p messagesPage
		pos := b.sim.heldRoom(r.ID).oldestPos()
		b.call(t, "GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/messages?dir=b&from=%d", url.PathEscape(r.ID), pos), user, &p)
		if len(p.Chunk) != 0 || p.End != nil || b.sim.Requests()["fed.backfill"] != before+1 || !info.ReachedCreate {
			t.Fatalf("past the create: %d events, end %v, backfills %d → %d", len(p.Chunk), p.End, before, b.sim.Requests()["fed.backfill"])
		}
	}
	if n := b.sim.Requests()["fed.make_join"]; n != len(rooms) {
		t.Fatalf("%d make_join for %d rooms", n, len(rooms))
	}
}

func TestAppserviceAuth(t *testing.T) {
	b := newBed(t, world.Options{Seed: 4, Rooms: -1, MessagesPerRoom: 5})
	user := b.w.Users[1].ID
	var who struct {
		UserID string `json:"user_id"`
	}
	if status, body := b.call(t, "GET", "/_matrix/client/v3/account/whoami", user, &who); status != 200 || who.UserID != user {
		t.Fatalf("whoami as %s: %d %s", user, status, body)
	}
	if status, _ := b.call(t, "GET", "/_matrix/client/v3/account/whoami", "", &who); status != 200 || who.UserID != "@transition-matrix:"+b.w.ServerName {
		t.Fatalf("whoami without user_id: %s", who.UserID)
	}
	for _, c := range []struct {
		user, want string
		status     int
	}{
		{"@someone:" + b.w.RemoteServerName, "M_EXCLUSIVE", 403},
		{"@nobody:" + b.w.ServerName, "M_FORBIDDEN", 403},
	} {
		status, body := b.call(t, "GET", "/_matrix/client/v3/joined_rooms", c.user, nil)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("as %s: %d %s, want %d %s", c.user, status, body, c.status, c.want)
		}
	}
	b.sim.AddUser("@nobody:"+b.w.ServerName, "", "")
	if status, _ := b.call(t, "GET", "/_matrix/client/v3/joined_rooms", "@nobody:"+b.w.ServerName, nil); status != 200 {
		t.Errorf("added user refused: %d", status)
	}
	for _, tok := range []string{"", "wrong"} {
		req, _ := http.NewRequest("GET", b.sim.URL+"/_matrix/client/v3/joined_rooms", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(string(body), "M_") {
			t.Errorf("token %q: %d %s", tok, resp.StatusCode, body)
		}
	}
	resp, err := http.Get(b.sim.URL + "/_matrix/client/versions")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("versions: %v %v", err, resp)
	}
	resp.Body.Close()
}

func TestFaultsAndRefusedJoins(t *testing.T) {
	b := newBed(t, world.Options{Seed: 5, MessagesPerRoom: 150})
	rooms := hostable(b.w)
	cutRoom, failRoom := rooms[0], rooms[1]

	// A room whose history is cut short: 50 events backfilled, then nothing; create never arrives.
	b.sim.Faults().CutHistory(cutRoom.ID, 50)
	user := localMember(b.w, cutRoom)
	b.join(t, cutRoom, user)
	ids, reached := b.paginate(t, cutRoom.ID, user, 100)
	info, _ := b.sim.Room(cutRoom.ID)
	if reached || info.ReachedCreate || info.Backfilled != 50 || len(ids) != 51 {
		t.Fatalf("cut room: reached %v, backfilled %d, %d events", reached, info.Backfilled, len(ids))
	}

	// A join that fails on purpose, then succeeds once the fault is cleared.
	b.sim.Faults().FailJoin(failRoom.ID)
	user = localMember(b.w, failRoom)
	status, body := b.call(t, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(failRoom.ID)+"/join", user, nil)
	if status != http.StatusBadGateway || !strings.Contains(body, "No server available") {
		t.Fatalf("failed join: %d %s", status, body)
	}
	if _, ok := b.sim.Room(failRoom.ID); ok {
		t.Fatal("a failed join left the room held")
	}
	b.sim.Faults().Clear()
	b.join(t, failRoom, user)
	// Joining again is a no-op.
	before := b.sim.Requests()["fed.make_join"]
	b.join(t, failRoom, user)
	if b.sim.Requests()["fed.make_join"] != before {
		t.Fatal("a second join asked make_join again")
	}

	// A /messages fault answers 500 once.
	b.sim.Faults().FailMessages(failRoom.ID, 1)
	if status, _ := b.call(t, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(failRoom.ID)+"/messages?dir=b", user, nil); status != 500 {
		t.Fatalf("injected /messages failure: %d", status)
	}
	if status, _ := b.call(t, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(failRoom.ID)+"/messages?dir=b", user, nil); status != 200 {
		t.Fatalf("after the injected failure: %d", status)
	}

	// A v1 room: the shim refuses make_join for the versions Conduit asks, the join fails.
	if v1 := b.w.RoomsOfKind(world.KindV1); len(v1) > 0 {
		status, body := b.call(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(v1[0].ID)+"?server_name="+b.w.ServerName, localMember(b.w, v1[0]), nil)
		if status == 200 || !strings.Contains(body, "M_INCOMPATIBLE_ROOM_VERSION") {
			t.Fatalf("v1 join: %d %s", status, body)
		}
	}
	// Only the own name is reachable: a room joined via another server fails.
	other := rooms[2]
	status, body = b.call(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(other.ID)+"?server_name=elsewhere.test", localMember(b.w, other), nil)
	if other.ID[strings.IndexByte(other.ID, ':')+1:] != b.w.ServerName && (status == 200 || !strings.Contains(body, "elsewhere.test: unreachable")) {
		t.Fatalf("join via an unreachable server: %d %s", status, body)
	}
}

func TestSendJoinVerification(t *testing.T) {
	b := newBed(t, world.Options{Seed: 6, Rooms: -1, MessagesPerRoom: 10})
	r := hostable(b.w)[0]
	user := localMember(b.w, r)
	st := r.CurrentState()

	// A state event with a broken signature is dropped silently; the join still succeeds.
	var victim string
	for k, id := range st.Map() {
		if k.Type == "m.room.member" && k.StateKey != user {
			victim = id
			break
		}
	}
	b.shim.mu.Lock()
	b.shim.corrupt[victim] = true
	b.shim.mu.Unlock()
	b.join(t, r, user)
	info, _ := b.sim.Room(r.ID)
	if slices.Contains(info.State, victim) || len(info.State) != st.Len()-1 {
		t.Fatalf("state: %d events (want %d without the broken one)", len(info.State), st.Len()-1)
	}

	// A broken auth event makes the join fail its auth check.
	b2 := newBed(t, world.Options{Seed: 6, Rooms: -1, MessagesPerRoom: 10})
	pl, _ := st.Get("m.room.power_levels", "")
	b2.shim.corrupt[pl] = true
	status, body := b2.call(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(r.ID)+"?server_name="+b.w.ServerName, user, nil)
	if status != http.StatusForbidden || !strings.Contains(body, "Auth check failed") {
		t.Fatalf("join with a broken power levels event: %d %s", status, body)
	}

	// An "event" in send_join with another ID is refused.
	b3 := newBed(t, world.Options{Seed: 6, Rooms: -1, MessagesPerRoom: 10})
	b3.shim.event = json.RawMessage(r.Create().JSON)
	status, body = b3.call(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(r.ID)+"?server_name="+b.w.ServerName, user, nil)
	if status == 200 || !strings.Contains(body, "wrong event id") {
		t.Fatalf("send_join with a foreign event: %d %s", status, body)
	}
}

func TestJoinEventIsConduits(t *testing.T) {
	b := newBed(t, world.Options{Seed: 7, Rooms: -1, MessagesPerRoom: 5})
	r := hostable(b.w)[0]
	user := localMember(b.w, r)
	b.join(t, r, user)
	info, _ := b.sim.Room(r.ID)
	rm := b.sim.heldRoom(r.ID)
	p, _ := rm.cl.Event(info.Timeline[0])
	raw := p.JSON()
	if strings.Contains(string(raw), `"event_id"`) {
		t.Fatal("the join carries an event_id field")
	}
	if err := signing.VerifyEventSignature(r.Version, b.w.ServerName, signing.KeyID(b.w.SigningKey.KeyID), b.w.SigningKey.Public, raw); err != nil {
		t.Fatalf("join signature: %v", err)
	}
	var ev struct {
		Origin  string `json:"origin"`
		Content struct {
			Membership  string `json:"membership"`
			DisplayName string `json:"displayname"`
		} `json:"content"`
		PrevEvents []string `json:"prev_events"`
	}
	_ = json.Unmarshal(raw, &ev)
	if ev.Origin != b.w.ServerName || ev.Content.Membership != "join" || ev.Content.DisplayName != b.w.User(user).Profile.DisplayName ||
		!slices.Equal(ev.PrevEvents, r.ForwardExtremities()) {
		t.Fatalf("join %s", raw)
	}
}

func TestJoinFormatRefusesAListedCreateInVersion12(t *testing.T) {
	v12 := gmsl.MustGetRoomVersion(gmsl.RoomVersionV12)
	room := "!" + strings.Repeat("A", 43)
	ok := []byte(`{"room_id":"` + room + `","prev_events":["$p"],"auth_events":["$pl","$jr"]}`)
	bad := []byte(`{"room_id":"` + room + `","prev_events":["$p"],"auth_events":["$` + strings.Repeat("A", 43) + `","$pl"]}`)
	if err := checkJoinFormat(v12, ok); err != nil {
		t.Fatalf("a v12 join without the create refused: %v", err)
	}
	if err := checkJoinFormat(v12, bad); err == nil || !strings.Contains(err.Error(), "create event") {
		t.Fatalf("a v12 join listing the create accepted: %v", err)
	}
	v11 := gmsl.MustGetRoomVersion(gmsl.RoomVersionV11)
	if err := checkJoinFormat(v11, []byte(`{"room_id":"!r:x","prev_events":[],"auth_events":["$c","$pl"]}`)); err != nil {
		t.Fatalf("a v11 join refused: %v", err)
	}
	many := []byte(`{"room_id":"!r:x","prev_events":[],"auth_events":["1","2","3","4","5","6","7","8","9","10","11"]}`)
	if err := checkJoinFormat(v11, many); err == nil {
		t.Fatal("11 auth_events accepted")
	}
}
