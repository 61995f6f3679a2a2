package world

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"golang.org/x/crypto/bcrypt"
)

func init() { logrus.SetOutput(io.Discard) }

var (
	defaultOnce  sync.Once
	defaultWorld *World
	defaultErr   error
)

// testWorld is the default world (plus a rotated key), generated once per test binary.
func testWorld(t testing.TB) *World {
	t.Helper()
	defaultOnce.Do(func() { defaultWorld, defaultErr = Generate(Options{Seed: 42, OldKeyEvents: 12}) })
	if defaultErr != nil {
		t.Fatal(defaultErr)
	}
	return defaultWorld
}

var (
	longForkOnce  sync.Once
	longForkWorld *World
	longForkErr   error
)

// checkedWorlds are the worlds the structural checks run on: the default one and a small one with
// a long fork (Options.LongForkLength).
func checkedWorlds(t testing.TB) []*World {
	t.Helper()
	longForkOnce.Do(func() {
		longForkWorld, longForkErr = Generate(Options{Seed: 43, Rooms: -1, MessagesPerRoom: 10, LongForkLength: 150})
	})
	if longForkErr != nil {
		t.Fatal(longForkErr)
	}
	return []*World{testWorld(t), longForkWorld, v12World(t)}
}

var (
	v12Once sync.Once
	v12W    *World
	v12WErr error
)

// v12World is a world with two rooms of version 12 (Options.V12Rooms) and a rotated key.
func v12World(t testing.TB) *World {
	t.Helper()
	v12Once.Do(func() {
		v12W, v12WErr = Generate(Options{Seed: 44, Rooms: 1, MessagesPerRoom: 25, V12Rooms: 2, OldKeyEvents: 5})
	})
	if v12WErr != nil {
		t.Fatal(v12WErr)
	}
	return v12W
}

// memKeys is an in-memory gmsl.JSONVerifier over fixed server keys; a key
// with a non-zero expiry only verifies messages from before it.
type memKeys map[string]map[string]struct {
	pub     ed25519.PublicKey
	expired int64
}

func keysOf(w *World) memKeys {
	m := memKeys{}
	add := func(k ServerKey, exp int64) {
		if m[k.ServerName] == nil {
			m[k.ServerName] = map[string]struct {
				pub     ed25519.PublicKey
				expired int64
			}{}
		}
		m[k.ServerName][k.KeyID] = struct {
			pub     ed25519.PublicKey
			expired int64
		}{k.Public, exp}
	}
	add(w.SigningKey, 0)
	add(w.RemoteKey, 0)
	for _, k := range w.OldKeys {
		add(k.ServerKey, k.ExpiredTS)
	}
	return m
}

func (m memKeys) VerifyJSONs(_ context.Context, reqs []gmsl.VerifyJSONRequest) ([]gmsl.VerifyJSONResult, error) {
	out := make([]gmsl.VerifyJSONResult, len(reqs))
	for i, r := range reqs {
		ids, err := gmsl.ListKeyIDs(string(r.ServerName), r.Message)
		if err != nil {
			out[i].Error = err
			continue
		}
		out[i].Error = fmt.Errorf("no valid signature by %s", r.ServerName)
		for _, id := range ids {
			k, ok := m[string(r.ServerName)][string(id)]
			if !ok || (k.expired != 0 && int64(r.AtTS) >= k.expired) {
				continue
			}
			if err := gmsl.VerifyJSON(string(r.ServerName), id, k.pub, r.Message); err == nil {
				out[i].Error = nil
				break
			}
		}
	}
	return out, nil
}

func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// digest hashes everything a world exposes, to compare two worlds.
func digest(t *testing.T, w *World) [32]byte {
	h := sha256.New()
	for _, r := range w.Rooms {
		fmt.Fprintln(h, r.ID, r.Version, r.Kind, r.Name, r.Topic, r.FirstLocalJoin, r.ForwardExtremities())
		for _, e := range r.Events {
			fmt.Fprintln(h, e.StreamOrdering, e.Redacted, e.RedactedBy)
			h.Write(e.JSON)
			h.Write(e.RedactedJSON)
		}
	}
	for _, u := range w.Users {
		b, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	fmt.Fprintln(h, w.SigningKey.SynapseKeyFile(), w.RemoteKey.SynapseKeyFile(), w.OldKeys)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func TestDeterminism(t *testing.T) {
	a, err := Generate(Options{Seed: 7, Workers: 1, OldKeyEvents: 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(Options{Seed: 7, Workers: 8, OldKeyEvents: 3})
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, a) != digest(t, b) {
		t.Fatal("same seed gave different worlds")
	}
	if !bytes.Equal(a.Rooms[0].Events[5].JSON, b.Rooms[0].Events[5].JSON) {
		t.Fatal("event JSON differs")
	}
	c, err := Generate(Options{Seed: 8, OldKeyEvents: 3})
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, a) == digest(t, c) {
		t.Fatal("different seeds gave the same world")
	}
	if bytes.Equal(a.Rooms[0].Create().JSON, c.Rooms[0].Create().JSON) {
		t.Fatal("different seeds gave the same create event")
	}
}

// v1RefHash recomputes a room v1 reference hash from the spec: sha256 of the
// canonical redacted event without signatures and unsigned.
func v1RefHash(t *testing.T, pdu []byte) string {
	red, err := gmsl.MustGetRoomVersion(gmsl.RoomVersionV1).RedactEventJSON(pdu)
	if err != nil {
		t.Fatal(err)
	}
	red, _ = sjson.DeleteBytes(red, "signatures")
	red, _ = sjson.DeleteBytes(red, "unsigned")
	c, err := gmsl.CanonicalJSON(red)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(c)
	return base64.RawStdEncoding.EncodeToString(s[:])
}

func TestEventsParseAndVerify(t *testing.T) {
	for _, w := range checkedWorlds(t) {
		keys := keysOf(w)
		ctx := context.Background()
		n := 0
		for _, r := range w.Rooms {
			verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(r.Version))
			for _, e := range r.Events {
				n++
				pdu, err := verImpl.NewEventFromUntrustedJSON(e.JSON)
				if err != nil {
					t.Fatalf("%s: %v", e.ID, err)
				}
				if pdu.Redacted() {
					t.Fatalf("%s: content hash mismatch", e.ID)
				}
				if pdu.EventID() != e.ID {
					t.Fatalf("event ID %s, computed %s", e.ID, pdu.EventID())
				}
				if err := gmsl.VerifyEventSignatures(ctx, pdu, keys, userIDForSender); err != nil {
					t.Fatalf("%s: %v", e.ID, err)
				}
				if gjson.GetBytes(e.JSON, "unsigned").Exists() {
					t.Fatalf("%s has unsigned", e.ID)
				}
				hasID := gjson.GetBytes(e.JSON, "event_id").Exists()
				if hasID != (r.Version == "1") {
					t.Fatalf("%s (v%s): event_id present=%v", e.ID, r.Version, hasID)
				}
				if gjson.GetBytes(e.JSON, "origin").String() != e.Origin || serverOf(e.Sender) != e.Origin {
					t.Fatalf("%s: origin %q sender %q", e.ID, e.Origin, e.Sender)
				}
				if e.IsState() && !gjson.GetBytes(e.JSON, "prev_state").IsArray() {
					t.Fatalf("%s: state event without prev_state", e.ID)
				}
				if r.Version == "1" {
					if !strings.HasSuffix(e.ID, ":"+e.Origin) || len(e.ID) != 1+18+1+len(e.Origin) {
						t.Fatalf("bad v1 event ID %q", e.ID)
					}
					for _, field := range []string{"prev_events", "auth_events"} {
						for _, ref := range gjson.GetBytes(e.JSON, field).Array() {
							target := r.Event(ref.Get("0").String())
							if target == nil || ref.Get("1.sha256").String() != v1RefHash(t, target.JSON) {
								t.Fatalf("%s: bad %s ref %s", e.ID, field, ref.Raw)
							}
						}
					}
				}
				if e.Redacted {
					red, err := verImpl.NewEventFromUntrustedJSON(e.RedactedJSON)
					if err != nil || red.EventID() != e.ID || gjson.GetBytes(e.RedactedJSON, "content.body").Exists() {
						t.Fatalf("%s: bad redacted JSON (%v)", e.ID, err)
					}
					if err := gmsl.VerifyEventSignatures(ctx, red, keys, userIDForSender); err != nil {
						t.Fatalf("%s redacted: %v", e.ID, err)
					}
				}
			}
		}
		if n != w.EventCount() {
			t.Fatalf("checked %d events, world has %d", n, w.EventCount())
		}
		// A tampered signature must fail, so the check above means something.
		rm := w.RoomsOfKind(KindRemoteMembers)[0]
		for _, e := range rm.Events {
			if e.Origin != w.RemoteServerName {
				continue
			}
			sig := gjson.GetBytes(e.JSON, "signatures."+strings.ReplaceAll(w.RemoteServerName, ".", `\.`)+"."+strings.ReplaceAll(w.RemoteKey.KeyID, ".", `\.`)).String()
			forged := strings.Replace(string(e.JSON), sig, base64.RawStdEncoding.EncodeToString(make([]byte, 64)), 1)
			pdu, err := gmsl.MustGetRoomVersion(gmsl.RoomVersion(rm.Version)).NewEventFromUntrustedJSON([]byte(forged))
			if err != nil || sig == "" {
				t.Fatal(err, sig)
			}
			if gmsl.VerifyEventSignatures(ctx, pdu, keys, userIDForSender) == nil {
				t.Fatal("forged signature verified")
			}
			break
		}
	}
}

func parsed(t *testing.T, r *Room, cache map[string]gmsl.PDU, id string) gmsl.PDU {
	if p, ok := cache[id]; ok {
		return p
	}
	e := r.Event(id)
	if e == nil {
		t.Fatalf("unknown event %s", id)
	}
	p, err := gmsl.MustGetRoomVersion(gmsl.RoomVersion(r.Version)).NewEventFromTrustedJSONWithEventID(id, e.JSON, false)
	if err != nil {
		t.Fatal(err)
	}
	cache[id] = p
	return p
}

func TestAuthRules(t *testing.T) {
	for _, w := range checkedWorlds(t) {
		for _, r := range w.Rooms {
			cache := map[string]gmsl.PDU{}
			for _, e := range r.Events {
				pdu := parsed(t, r, cache, e.ID)
				var authPDUs []gmsl.PDU
				for _, a := range r.AuthEventIDs(e) {
					authPDUs = append(authPDUs, parsed(t, r, cache, a))
				}
				ae, err := gmsl.NewAuthEvents(authPDUs)
				if err != nil {
					t.Fatal(err)
				}
				if err := gmsl.Allowed(pdu, ae, userIDForSender); err != nil {
					t.Fatalf("room v%s %s event %s (%s): %v", r.Version, r.Kind, e.ID, e.Type, err)
				}
				// The auth events are exactly those gmsl selects from the state before the event.
				st, _ := r.StateBefore(e.ID)
				var statePDUs []gmsl.PDU
				for _, id := range st.EventIDs() {
					statePDUs = append(statePDUs, parsed(t, r, cache, id))
				}
				provider, err := gmsl.NewAuthEvents(statePDUs)
				if err != nil {
					t.Fatal(err)
				}
				needed, err := gmsl.StateNeededForProtoEvent(&gmsl.ProtoEvent{Type: e.Type, StateKey: e.StateKey, SenderID: e.Sender, Content: contentOf(e.JSON)})
				if err != nil {
					t.Fatal(err)
				}
				want, err := needed.AuthEventReferences(provider)
				if err != nil {
					t.Fatal(err)
				}
				if e.Type == "m.room.create" {
					want = []string{}
				}
				if r.DomainlessIDs() { // version 12: the room ID implies the create event
					want = slices.DeleteFunc(want, func(id string) bool { return id == r.Create().ID })
				}
				got := append([]string(nil), e.AuthEvents...)
				sort.Strings(got)
				want = dedupSorted(want)
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Fatalf("%s (%s): auth_events %v, gmsl wants %v", e.ID, e.Type, got, want)
				}
			}
		}
		// Dropping the sender's membership from a message's auth events must be refused.
		r := w.Rooms[0]
		for _, e := range r.Events {
			if e.Type != "m.room.message" {
				continue
			}
			cache := map[string]gmsl.PDU{}
			var authPDUs []gmsl.PDU
			for _, a := range e.AuthEvents {
				if r.Event(a).Type != "m.room.member" {
					authPDUs = append(authPDUs, parsed(t, r, cache, a))
				}
			}
			ae, _ := gmsl.NewAuthEvents(authPDUs)
			if gmsl.Allowed(parsed(t, r, cache, e.ID), ae, userIDForSender) == nil {
				t.Fatal("message allowed without the sender's membership")
			}
			break
		}
	}
}

func dedupSorted(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

func TestDAG(t *testing.T) {
	for _, w := range checkedWorlds(t) {
		forks, merges := 0, 0
		var lastTS int64
		type seq struct {
			stream, ts int64
		}
		var all []seq
		for _, r := range w.Rooms {
			pos := map[string]int{}
			children := map[string]int{}
			for i, e := range r.Events {
				if e.RoomID != r.ID || w.Event(e.ID) != e || r.Event(e.ID) != e {
					t.Fatalf("index broken for %s", e.ID)
				}
				if i == 0 {
					if e.Type != "m.room.create" || e.Depth != 1 || len(e.PrevEvents) != 0 || len(e.AuthEvents) != 0 {
						t.Fatalf("bad create event in %s", r.ID)
					}
				} else {
					if len(e.PrevEvents) == 0 {
						t.Fatalf("%s has no prev_events", e.ID)
					}
					var maxDepth int64
					for _, p := range e.PrevEvents {
						j, ok := pos[p]
						if !ok {
							t.Fatalf("%s: prev %s is not an earlier event", e.ID, p)
						}
						maxDepth = max(maxDepth, r.Events[j].Depth)
						children[p]++
					}
					if e.Depth != maxDepth+1 {
						t.Fatalf("%s: depth %d, want %d", e.ID, e.Depth, maxDepth+1)
					}
					if len(e.PrevEvents) > 1 {
						merges++
					}
				}
				for _, a := range e.AuthEvents {
					if _, ok := pos[a]; !ok {
						t.Fatalf("%s: auth %s is not an earlier event", e.ID, a)
					}
				}
				if d := gjson.GetBytes(e.JSON, "depth").Int(); d != e.Depth {
					t.Fatalf("JSON depth %d != %d", d, e.Depth)
				}
				pos[e.ID] = i
				all = append(all, seq{e.StreamOrdering, e.OriginServerTS})
			}
			for _, c := range children {
				if c > 1 {
					forks++
				}
			}
			var ext []string
			for _, e := range r.Events {
				if children[e.ID] == 0 {
					ext = append(ext, e.ID)
				}
			}
			sort.Strings(ext)
			if strings.Join(ext, ",") != strings.Join(r.ForwardExtremities(), ",") {
				t.Fatalf("%s: extremities %v, want %v", r.ID, r.ForwardExtremities(), ext)
			}
		}
		if forks == 0 || merges == 0 {
			t.Fatalf("forks=%d merges=%d, want both", forks, merges)
		}
		// Positive stream orderings are unique and follow time.
		sort.Slice(all, func(i, j int) bool { return all[i].stream < all[j].stream })
		for i, s := range all {
			if s.stream <= 0 {
				continue
			}
			if i > 0 && all[i-1].stream == s.stream {
				t.Fatal("duplicate stream ordering")
			}
			if s.ts <= lastTS {
				t.Fatal("timestamps not increasing with stream ordering")
			}
			lastTS = s.ts
		}
		if len(w.RoomsOfKind(KindRemoteMembers)[0].ForwardExtremities()) != 2 {
			t.Fatal("remote_members room should end with two forward extremities")
		}
	}
}

func TestSameDepthEvents(t *testing.T) {
	w := testWorld(t)
	for _, r := range w.Rooms {
		depths := map[int64]int{}
		for _, e := range r.Events {
			depths[e.Depth]++
			if depths[e.Depth] == 2 {
				return
			}
		}
	}
	t.Fatal("no two events share a depth")
}

// TestStateViews replays each room naively and compares every state snapshot.
func TestStateViews(t *testing.T) {
	for _, w := range checkedWorlds(t) {
		for _, r := range w.Rooms {
			after := map[string]map[StateKey]string{}
			for _, e := range r.Events {
				cur := map[StateKey]string{}
				if len(e.PrevEvents) > 0 {
					for k, v := range after[e.PrevEvents[0]] {
						cur[k] = v
					}
				}
				got, _ := r.StateBefore(e.ID)
				if !equalState(got.Map(), cur) || got.Len() != len(cur) {
					t.Fatalf("%s: state before differs", e.ID)
				}
				for k, v := range cur {
					if id, ok := got.Get(k.Type, k.StateKey); !ok || id != v {
						t.Fatalf("%s: Get(%v)=%s want %s", e.ID, k, id, v)
					}
				}
				if e.IsState() {
					cur[StateKey{e.Type, *e.StateKey}] = e.ID
				}
				after[e.ID] = cur
				ga, _ := r.StateAfter(e.ID)
				if !equalState(ga.Map(), cur) {
					t.Fatalf("%s: state after differs", e.ID)
				}
				localJoined := 0
				for k, id := range cur {
					if k.Type == "m.room.member" && serverOf(k.StateKey) == w.ServerName && r.Event(id).Membership == "join" {
						localJoined++
					}
				}
				if ga.LocalJoined() != localJoined || r.LocalJoinedAt(e.ID) != (localJoined > 0) {
					t.Fatalf("%s: local joined %d, want %d", e.ID, ga.LocalJoined(), localJoined)
				}
			}
			if !equalState(r.CurrentState().Map(), after[r.Latest().ID]) {
				t.Fatalf("%s: current state differs", r.ID)
			}
		}
	}
}

func equalState(a, b map[StateKey]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestSpecialRooms(t *testing.T) {
	w := testWorld(t)
	versions := map[string]bool{}
	for _, r := range w.Rooms {
		versions[r.Version] = true
		if c := gjson.GetBytes(r.Create().JSON, "content"); c.Get("room_version").String() != r.Version ||
			c.Get("creator").Exists() == (r.Version == "11") {
			t.Fatalf("bad create content %s for v%s", c.Raw, r.Version)
		}
	}
	for _, v := range []string{"1", "6", "10", "11"} {
		if !versions[v] {
			t.Fatalf("no room of version %s", v)
		}
	}

	left := w.RoomsOfKind(KindAllLeft)
	if len(left) != 1 || left[0].LocalJoinedNow() || len(left[0].JoinedMembers()) != 0 {
		t.Fatal("all_left room still has joined members")
	}
	if !left[0].LocalJoinedAt(left[0].Events[10].ID) {
		t.Fatal("all_left room never had local members")
	}

	jv := w.RoomsOfKind(KindJoinedVisibility)[0]
	if serverOf(jv.Creator) != w.RemoteServerName || serverOf(jv.ID) != w.RemoteServerName {
		t.Fatal("joined-visibility room not created remotely")
	}
	first := jv.Event(jv.FirstLocalJoin)
	if first == nil || first.Membership != "join" || serverOf(first.Sender) != w.ServerName {
		t.Fatal("no first local join")
	}
	early := jv.Events[5]
	if early.Depth >= first.Depth || jv.LocalJoinedAt(early.ID) || !jv.LocalJoinedAt(first.ID) {
		t.Fatal("joined-visibility room has no events before the first local join")
	}
	if jv.HistoryVisibilityAt(early.ID) != "joined" || early.StreamOrdering >= 0 || first.StreamOrdering <= 0 {
		t.Fatalf("visibility %q stream %d/%d", jv.HistoryVisibilityAt(early.ID), early.StreamOrdering, first.StreamOrdering)
	}

	rm := w.RoomsOfKind(KindRemoteMembers)[0]
	remote := 0
	for _, e := range rm.Events {
		if e.Origin == w.RemoteServerName {
			remote++
			if !gjson.GetBytes(e.JSON, "signatures."+strings.ReplaceAll(w.RemoteServerName, ".", `\.`)).Exists() || e.SignedWithKey != w.RemoteKey.KeyID {
				t.Fatalf("%s not signed by the remote server", e.ID)
			}
		}
	}
	if remote < 3 || !rm.LocalJoinedNow() {
		t.Fatalf("remote_members room: %d remote events", remote)
	}

	// Ordinary rooms carry edits, redactions, topic and power-level changes.
	seen := map[string]int{}
	for _, r := range w.RoomsOfKind(KindOrdinary) {
		for _, e := range r.Events {
			switch {
			case gjson.GetBytes(e.JSON, `content.m\.relates_to.rel_type`).String() == "m.replace":
				seen["edit"]++
			case e.Type == "m.room.redaction":
				seen["redaction"]++
				if !r.Event(e.Redacts).Redacted || r.Event(e.Redacts).RedactedBy != e.ID {
					t.Fatal("redaction target not marked")
				}
			case e.Type == "m.room.topic" && e.Depth > 10:
				seen["topic"]++
			case e.Type == "m.room.power_levels" && e.Depth > 3:
				seen["power"]++
			case e.Type == "m.room.encrypted":
				seen["encrypted"]++
			}
		}
	}
	for _, k := range []string{"edit", "redaction", "topic", "power", "encrypted"} {
		if seen[k] == 0 {
			t.Fatalf("no %s in ordinary rooms: %v", k, seen)
		}
	}
	if w.Room(w.Aliases["#lobby:"+w.ServerName]) == nil {
		t.Fatal("lobby alias missing")
	}
}

func TestOldKey(t *testing.T) {
	w := testWorld(t)
	if len(w.OldKeys) != 1 || w.OldKeys[0].KeyID == w.SigningKey.KeyID {
		t.Fatal("expected one distinct old key")
	}
	old := w.OldKeys[0]
	n := 0
	for _, r := range w.Rooms {
		for _, e := range r.Events {
			if e.SignedWithKey == old.KeyID {
				n++
				if e.OriginServerTS >= old.ExpiredTS {
					t.Fatalf("%s signed by old key after its expiry", e.ID)
				}
			} else if e.Origin == w.ServerName && e.OriginServerTS < old.ExpiredTS {
				t.Fatalf("%s signed by new key before the rotation", e.ID)
			}
		}
	}
	if n != 12 {
		t.Fatalf("%d events signed by the old key, want 12", n)
	}
	// Without the old key in the key ring those events do not verify.
	keys := keysOf(w)
	delete(keys[w.ServerName], old.KeyID)
	for _, r := range w.Rooms {
		for _, e := range r.Events {
			if e.SignedWithKey != old.KeyID {
				continue
			}
			pdu, _ := gmsl.MustGetRoomVersion(gmsl.RoomVersion(r.Version)).NewEventFromUntrustedJSON(e.JSON)
			if gmsl.VerifyEventSignatures(context.Background(), pdu, keys, userIDForSender) == nil {
				t.Fatal("old-key event verified without the old key")
			}
			return
		}
	}
}

func TestAuthChain(t *testing.T) {
	w := testWorld(t)
	r := w.Rooms[0]
	e := r.Latest()
	chain := r.AuthChain([]string{e.ID}, false)
	in := map[string]bool{}
	for _, id := range chain {
		in[id] = true
	}
	if !in[r.Create().ID] || in[e.ID] {
		t.Fatal("auth chain must hold the create event and not the event itself")
	}
	for _, id := range chain {
		for _, a := range r.Event(id).AuthEvents {
			if !in[a] {
				t.Fatalf("auth chain not closed: %s missing", a)
			}
		}
	}
	if with := r.AuthChain([]string{e.ID}, true); len(with) != len(chain)+1 {
		t.Fatal("includeGiven should add the event")
	}
}

func TestUsers(t *testing.T) {
	w := testWorld(t)
	tokens := map[string]bool{}
	for _, u := range w.Users {
		if w.User(u.ID) != u {
			t.Fatal("user index broken")
		}
		switch {
		case u.Deactivated:
			if u.PasswordHash != "" || len(u.Devices) != 0 || len(u.Pushers) != 0 || len(u.Threepids) != 0 {
				t.Fatalf("%s: deactivated user keeps data", u.ID)
			}
			if len(w.JoinedRooms(u.ID)) != 0 {
				t.Fatalf("deactivated %s still joined", u.ID)
			}
		case u.Password == "":
			if u.PasswordHash != "" || len(u.ExternalIDs) == 0 {
				t.Fatalf("%s: no-password user has a hash", u.ID)
			}
		default:
			if !strings.HasPrefix(u.PasswordHash, "$2b$04$") {
				t.Fatalf("hash %q", u.PasswordHash)
			}
			if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(u.Password)); err != nil {
				t.Fatalf("%s: %v", u.ID, err)
			}
			if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(u.Password+"x")) == nil {
				t.Fatal("wrong password accepted")
			}
		}
		for _, d := range u.Devices {
			if !strings.HasPrefix(d.AccessToken, "syt_") || tokens[d.AccessToken] {
				t.Fatalf("bad or duplicate token %q", d.AccessToken)
			}
			tokens[d.AccessToken] = true
			if d.Keys == nil {
				continue
			}
			pub := d.Ed25519.Public().(ed25519.PublicKey)
			if err := gmsl.VerifyJSON(u.ID, gmsl.KeyID("ed25519:"+d.ID), pub, d.Keys); err != nil {
				t.Fatalf("%s/%s device keys: %v", u.ID, d.ID, err)
			}
			if gjson.GetBytes(d.Keys, "keys.ed25519:"+d.ID).String() != base64.RawStdEncoding.EncodeToString(pub) {
				t.Fatal("device ed25519 key mismatch")
			}
			if cs := u.CrossSigning; cs != nil {
				if err := gmsl.VerifyJSON(u.ID, gmsl.KeyID("ed25519:"+cs.SelfSigningPublic), cs.SelfSigningPriv.Public().(ed25519.PublicKey), d.Keys); err != nil {
					t.Fatalf("device not cross-signed: %v", err)
				}
			}
			for _, k := range d.OneTimeKeys {
				if err := gmsl.VerifyJSON(u.ID, gmsl.KeyID("ed25519:"+d.ID), pub, k); err != nil {
					t.Fatal(err)
				}
			}
		}
		if cs := u.CrossSigning; cs != nil {
			mpub := cs.MasterPriv.Public().(ed25519.PublicKey)
			for _, k := range []json.RawMessage{cs.SelfSigning, cs.UserSigning} {
				if err := gmsl.VerifyJSON(u.ID, gmsl.KeyID("ed25519:"+cs.MasterPublic), mpub, k); err != nil {
					t.Fatalf("cross-signing key not signed by master: %v", err)
				}
			}
			kb := u.KeyBackup
			if kb == nil || kb.Count() == 0 || kb.ETag == "" {
				t.Fatalf("%s: no key backup", u.ID)
			}
			if err := gmsl.VerifyJSON(u.ID, gmsl.KeyID("ed25519:"+cs.MasterPublic), mpub, kb.AuthData); err != nil {
				t.Fatalf("backup auth_data: %v", err)
			}
			if _, ok := u.AccountData.Global["m.secret_storage.default_key"]; !ok {
				t.Fatal("no secret storage")
			}
		}
		if !u.Deactivated && len(u.PushRules) == 0 {
			t.Fatal("no push rules")
		}
		for room := range u.AccountData.Rooms {
			if w.Room(room) == nil {
				t.Fatalf("account data for unknown room %s", room)
			}
		}
	}
	alice := w.User("@alice:" + w.ServerName)
	if alice == nil || alice.Admin || !w.User("@admin:"+w.ServerName).Admin || len(alice.Pushers) != 1 || len(alice.Tags) == 0 {
		t.Fatal("alice/admin setup wrong")
	}
	var direct map[string][]string
	if err := json.Unmarshal(alice.AccountData.Global["m.direct"], &direct); err != nil || w.Room(direct["@bob:"+w.ServerName][0]) == nil {
		t.Fatal("bad m.direct")
	}
	joined := w.JoinedRooms(alice.ID)
	if len(joined) < 4 {
		t.Fatalf("alice joined %d rooms", len(joined))
	}
	for _, id := range joined {
		if w.Memberships(alice.ID)[id] != "join" {
			t.Fatal("memberships disagree with joined rooms")
		}
	}
	if w.User("@helper-bot:"+w.ServerName).UserType != "bot" {
		t.Fatal("no bot user")
	}
}

func TestBcryptMatchesXCrypto(t *testing.T) {
	for cost := 4; cost <= 5; cost++ {
		h, err := bcryptHash("correct horse", cost, []byte("0123456789abcdef"))
		if err != nil {
			t.Fatal(err)
		}
		if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")); err != nil {
			t.Fatalf("cost %d: %v", cost, err)
		}
		if c, _ := bcrypt.Cost([]byte(h)); c != cost {
			t.Fatalf("cost %d", c)
		}
	}
}

func TestSynapseKeyFile(t *testing.T) {
	w := testWorld(t)
	f := strings.Fields(w.SigningKey.SynapseKeyFile())
	seed, err := base64.RawStdEncoding.DecodeString(f[2])
	if err != nil || len(f) != 3 || f[0] != "ed25519" || "ed25519:"+f[1] != w.SigningKey.KeyID ||
		!ed25519.NewKeyFromSeed(seed).Equal(w.SigningKey.Private) || len(f[1]) != 6 || !strings.HasPrefix(f[1], "a_") {
		t.Fatalf("bad key file %q", w.SigningKey.SynapseKeyFile())
	}
}

func TestTotalEvents50k(t *testing.T) {
	if testing.Short() {
		t.Skip("50k events")
	}
	w, err := Generate(Options{Seed: 3, TotalEvents: 50000})
	if err != nil {
		t.Fatal(err)
	}
	if w.EventCount() < 50000 {
		t.Fatalf("%d events", w.EventCount())
	}
	// State storage stays linear: far below one full state copy per event.
	var snaps []*stateSnap
	stateEvents, stateSize := 0, 0
	for _, r := range w.Rooms {
		snaps = append(snaps, r.stateBefore...)
		snaps = append(snaps, r.stateAfter...)
		stateSize += r.CurrentState().Len()
		for _, e := range r.Events {
			if e.IsState() {
				stateEvents++
			}
		}
	}
	stored := storedEntries(snaps)
	t.Logf("%d events, %d state events, current state %d entries, %d stored entries", w.EventCount(), stateEvents, stateSize, stored)
	if stored > 2*maxDelta*stateEvents+w.EventCount() {
		t.Fatalf("state storage %d entries is not linear", stored)
	}
}

func BenchmarkGenerate50k(b *testing.B) {
	b.ReportAllocs()
	events := 0
	for b.Loop() {
		w, err := Generate(Options{Seed: 3, TotalEvents: 50000})
		if err != nil {
			b.Fatal(err)
		}
		events += w.EventCount()
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

func TestNoV1Room(t *testing.T) {
	w, err := Generate(Options{Seed: 3, Rooms: -1, Users: -1, MessagesPerRoom: 2, NoV1Room: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(w.RoomsOfKind(KindV1)); n != 0 {
		t.Fatalf("%d v1 rooms with NoV1Room", n)
	}
	for _, r := range w.Rooms {
		if r.Version == "1" || r.Version == "2" {
			t.Errorf("room %s has version %s", r.ID, r.Version)
		}
	}
	with, err := Generate(Options{Seed: 3, Rooms: -1, Users: -1, MessagesPerRoom: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(with.Rooms) != len(w.Rooms)+1 || len(with.RoomsOfKind(KindV1)) != 1 {
		t.Errorf("rooms: %d without the option, %d with it", len(with.Rooms), len(w.Rooms))
	}
}

// TestLongFork checks the netsplit Options.LongForkLength adds: two branches of that many
// messages from one event, one remote and one local sender, merged by one local message.
func TestLongFork(t *testing.T) {
	const n = 150
	w := checkedWorlds(t)[1]
	r := w.RoomsOfKind(KindRemoteMembers)[0]
	var merge *Event
	for _, e := range r.Events {
		if len(e.PrevEvents) == 2 && e.Type == "m.room.message" {
			a, b := r.Event(e.PrevEvents[0]), r.Event(e.PrevEvents[1])
			if a.Depth == b.Depth && a.Depth >= n {
				merge = e
			}
		}
	}
	if merge == nil {
		t.Fatal("no merge of two long branches")
	}
	senders := map[string]bool{}
	var base []string
	for _, tip := range merge.PrevEvents {
		e := r.Event(tip)
		for range n {
			if e.Type != "m.room.message" || len(e.PrevEvents) != 1 {
				t.Fatalf("branch event %s: %s with %d prev_events", e.ID, e.Type, len(e.PrevEvents))
			}
			senders[e.Sender] = true
			e = r.Event(e.PrevEvents[0])
		}
		base = append(base, e.ID)
	}
	if base[0] != base[1] {
		t.Fatalf("the branches start from %v, want one event", base)
	}
	if len(senders) != 2 || !senders["@"+"rita:"+w.RemoteServerName] {
		t.Fatalf("branch senders %v, want a remote and a local user", senders)
	}
}
