package synapsetest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/testproc"
	"github.com/transition-matrix/transition-matrix/signing"
)

// ErrSeed is returned when the seeder cannot build its world.
var ErrSeed = errors.New("synapsetest: seeding failed")

// SeedOptions size the seeded world.
type SeedOptions struct {
	Messages int // messages in each of the big rooms (v10, v11, v12); 100 when 0
}

// Record is what the seeder made, the expectation tests compare the shim's output with.
type Record struct {
	ServerName string
	Version    string              // Synapse's version
	Users      map[string]*User    // by user ID, the admin included
	Rooms      map[string]*Room    // by room ID
	Named      map[string]string   // room role ("v10", "v11", "v12", "encrypted", "public", "dm", "abandoned", "v1", "upgraded-old", "upgraded-new") → room ID
	Skipped    []string            // what this Synapse version could not hold, and why
	KeyIDs     []signing.KeyID     // every signing key, the current first
	Media      map[string][]byte   // mxc URI → uploaded bytes
	MediaOwner map[string]string   // mxc URI → user ID
	Rotation   map[string][]string // room ID → event IDs sent after the key rotation
}

// User is one seeded account.
type User struct {
	UserID       string
	Password     string // "" for the account made without one
	Admin        bool
	Deactivated  bool
	Locked       bool
	ShadowBanned bool
	DisplayName  string
	AvatarURL    string
	Devices      map[string]*Device // by device ID
	// E2EE: public keys as uploaded (the signed JSON objects).
	CrossSigning  map[string]json.RawMessage // "master", "self_signing", "user_signing"
	BackupVersion string
	BackupAuth    json.RawMessage
	BackupKeys    map[string]map[string]json.RawMessage // room ID → session ID → key data
	AccountData   map[string]json.RawMessage            // global, by type (custom and m.direct)
	RoomData      map[string]map[string]json.RawMessage // room ID → type → content
	Tags          map[string][]string                   // room ID → tag names
	PushRuleID    string                                // an override rule added to the defaults
	PusherKey     string                                // the pushkey of the HTTP pusher
}

// Device is one seeded device and its session.
type Device struct {
	DeviceID     string
	DisplayName  string
	AccessToken  string
	DeviceKeys   json.RawMessage   // the signed device_keys object, as uploaded
	OneTimeKeys  map[string]string // "signed_curve25519:ID" → the key's JSON
	FallbackKeys map[string]string
}

// Room is one seeded room.
type Room struct {
	RoomID       string
	Version      string
	Creator      string
	Alias        string // canonical alias, if any
	Public       bool
	Encrypted    bool
	Messages     []string          // event IDs of m.room.message / m.room.encrypted sent, in order
	Redacted     []string          // event IDs redacted
	Edits        map[string]string // edit event ID → edited event ID
	Members      map[string]string // user ID → final membership
	Name, Topic  string
	LocalJoined  int
	Successor    string // the room that replaced it (upgrade)
	Predecessor  string
	SentByLocals int // events the seeder sent (state and messages), lower bound of the graph
}

// Seed builds the world through Synapse's client and admin APIs, rotating the signing key on the
// way (Synapse is restarted), and returns its record.
func Seed(ctx context.Context, s *Server, opts SeedOptions) (*Record, error) {
	if opts.Messages == 0 {
		opts.Messages = 100
	}
	sd := &seeder{s: s, rec: &Record{
		ServerName: s.ServerName, Version: s.Version, Users: map[string]*User{}, Rooms: map[string]*Room{},
		Named: map[string]string{}, Media: map[string][]byte{}, MediaOwner: map[string]string{},
		Rotation: map[string][]string{},
	}}
	if err := sd.run(ctx, opts); err != nil {
		return sd.rec, fmt.Errorf("%w: %v", ErrSeed, err)
	}
	for _, k := range s.Keys() {
		sd.rec.KeyIDs = append(sd.rec.KeyIDs, k.ID)
	}
	return sd.rec, nil
}

type seeder struct {
	s   *Server
	rec *Record
	mu  sync.Mutex
}

func (sd *seeder) do(ctx context.Context, method, path, token string, body, out any) error {
	return sd.s.Do(ctx, method, path, token, body, out)
}

func (sd *seeder) user(id string) *User { return sd.rec.Users[id] }

func (sd *seeder) register(ctx context.Context, localpart, display string) (*User, error) {
	pw := "pw-" + randomHex(8)
	r, err := sd.s.Register(ctx, localpart, pw, false)
	if err != nil {
		return nil, err
	}
	u := &User{UserID: r.UserID, Password: pw, Devices: map[string]*Device{r.DeviceID: {DeviceID: r.DeviceID, AccessToken: r.AccessToken}},
		AccountData: map[string]json.RawMessage{}, RoomData: map[string]map[string]json.RawMessage{}, Tags: map[string][]string{}}
	sd.rec.Users[u.UserID] = u
	if display != "" {
		if err := sd.do(ctx, "PUT", "/_matrix/client/v3/profile/"+PathEscape(u.UserID)+"/displayname", r.AccessToken,
			map[string]any{"displayname": display}, nil); err != nil {
			return nil, err
		}
		u.DisplayName = display
	}
	return u, nil
}

// token is the first device's access token of a user.
func (u *User) token() string {
	ids := make([]string, 0, len(u.Devices))
	for id := range u.Devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if u.Devices[id].AccessToken != "" {
			return u.Devices[id].AccessToken
		}
	}
	return ""
}

// Token is an access token of the user's (the one of its first device).
func (u *User) Token() string { return u.token() }

func (sd *seeder) upload(ctx context.Context, u *User, data []byte, contentType string) (string, error) {
	var r struct {
		ContentURI string `json:"content_uri"`
	}
	if _, err := sd.s.DoRaw(ctx, "POST", "/_matrix/media/v3/upload?filename=avatar.png", u.token(), contentType, data, &r); err != nil {
		return "", err
	}
	sd.mu.Lock()
	sd.rec.Media[r.ContentURI] = data
	sd.rec.MediaOwner[r.ContentURI] = u.UserID
	sd.mu.Unlock()
	return r.ContentURI, nil
}

func (sd *seeder) run(ctx context.Context, opts SeedOptions) error {
	s := sd.s
	admin := &User{UserID: s.AdminUserID, Admin: true, Password: s.AdminPassword, Devices: map[string]*Device{"": {AccessToken: s.AdminToken}},
		AccountData: map[string]json.RawMessage{}, RoomData: map[string]map[string]json.RawMessage{}, Tags: map[string][]string{}}
	var who struct {
		DeviceID string `json:"device_id"`
	}
	if err := sd.do(ctx, "GET", "/_matrix/client/v3/account/whoami", s.AdminToken, nil, &who); err != nil {
		return err
	}
	admin.Devices = map[string]*Device{who.DeviceID: {DeviceID: who.DeviceID, AccessToken: s.AdminToken}}
	sd.rec.Users[admin.UserID] = admin

	// Users.
	names := []struct{ local, display string }{
		{"alice", "Alice Liddell"}, {"bob", "Bob"}, {"carol", "Carol"}, {"dave", "Dave (leaving)"},
		{"erin", "Erin"}, {"frank", "Frank"},
	}
	users := map[string]*User{}
	for _, n := range names {
		u, err := sd.register(ctx, n.local, n.display)
		if err != nil {
			return err
		}
		users[n.local] = u
	}
	alice, bob, carol, dave, erin, frank := users["alice"], users["bob"], users["carol"], users["dave"], users["erin"], users["frank"]
	for _, u := range []*User{alice, bob, carol} {
		png := append([]byte("\x89PNG\r\n\x1a\n"), []byte("avatar of "+u.UserID)...)
		mxc, err := sd.upload(ctx, u, png, "image/png")
		if err != nil {
			return err
		}
		if err := sd.do(ctx, "PUT", "/_matrix/client/v3/profile/"+PathEscape(u.UserID)+"/avatar_url", u.token(),
			map[string]any{"avatar_url": mxc}, nil); err != nil {
			return err
		}
		u.AvatarURL = mxc
	}
	if _, err := sd.upload(ctx, bob, []byte("a file bob shared"), "text/plain"); err != nil {
		return err
	}
	// gina: made through the admin API without a password.
	gina := "@gina:" + s.ServerName
	if err := sd.do(ctx, "PUT", "/_synapse/admin/v2/users/"+PathEscape(gina), s.AdminToken,
		map[string]any{"displayname": "Gina (no password)"}, nil); err != nil {
		return err
	}
	sd.rec.Users[gina] = &User{UserID: gina, DisplayName: "Gina (no password)", Devices: map[string]*Device{},
		AccountData: map[string]json.RawMessage{}, RoomData: map[string]map[string]json.RawMessage{}, Tags: map[string][]string{}}

	if err := sd.devicesAndKeys(ctx, alice); err != nil {
		return fmt.Errorf("alice's devices and keys: %w", err)
	}

	// Rooms.
	big := []string{"10", "11", "12"}
	for _, v := range big {
		if !s.SupportsRoomVersion(v) {
			sd.rec.Skipped = append(sd.rec.Skipped, "room version "+v+": Synapse "+s.Version+" does not support it (v12 came in 1.135)")
			continue
		}
		id, err := sd.createRoom(ctx, alice, "v"+v, map[string]any{"room_version": v, "name": "Room v" + v, "preset": "private_chat"})
		if err != nil {
			return fmt.Errorf("room v%s: %w", v, err)
		}
		r := sd.rec.Rooms[id]
		for _, u := range []*User{bob, carol, erin, dave} {
			if err := sd.inviteJoin(ctx, alice, u, r); err != nil {
				return err
			}
		}
	}
	// Messages in the big rooms, the rooms in parallel.
	var wg sync.WaitGroup
	errs := make(chan error, len(big))
	for _, v := range big {
		id, ok := sd.rec.Named["v"+v]
		if !ok {
			continue
		}
		wg.Add(1)
		go func(r *Room) {
			defer wg.Done()
			if err := sd.history(ctx, r, []*User{alice, bob, carol, erin}, opts.Messages); err != nil {
				errs <- fmt.Errorf("history of %s: %w", r.RoomID, err)
			}
		}(sd.rec.Rooms[id])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	// State changes, a leave and a kick in the v10 room.
	v10 := sd.rec.Rooms[sd.rec.Named["v10"]]
	if err := sd.stateChanges(ctx, alice, v10); err != nil {
		return err
	}
	if err := sd.membership(ctx, carol, v10, "leave", carol.UserID, ""); err != nil {
		return err
	}
	if err := sd.membership(ctx, alice, v10, "kick", erin.UserID, "testing kicks"); err != nil {
		return err
	}

	// Encrypted room.
	enc, err := sd.createRoom(ctx, alice, "encrypted", map[string]any{"name": "Secrets", "preset": "private_chat",
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	if err != nil {
		return err
	}
	encRoom := sd.rec.Rooms[enc]
	encRoom.Encrypted = true
	if err := sd.inviteJoin(ctx, alice, bob, encRoom); err != nil {
		return err
	}
	for i := 0; i < 20; i++ {
		from := alice
		if i%2 == 1 {
			from = bob
		}
		id, err := sd.send(ctx, from, encRoom, "m.room.encrypted", map[string]any{"algorithm": "m.megolm.v1.aes-sha2",
			"ciphertext": "AwgAEn" + randomHex(40), "device_id": "DEV", "sender_key": "Qe3" + randomHex(20), "session_id": "sess" + strconv.Itoa(i%3)})
		if err != nil {
			return err
		}
		encRoom.Messages = append(encRoom.Messages, id)
	}

	// Public room with an alias.
	pub, err := sd.createRoom(ctx, bob, "public", map[string]any{"name": "Lobby", "preset": "public_chat",
		"visibility": "public", "room_alias_name": "lobby", "topic": "everyone welcome"})
	if err != nil {
		return err
	}
	pubRoom := sd.rec.Rooms[pub]
	pubRoom.Alias, pubRoom.Public, pubRoom.Topic = "#lobby:"+s.ServerName, true, "everyone welcome"
	for _, u := range []*User{alice, frank} {
		if err := sd.do(ctx, "POST", "/_matrix/client/v3/join/"+PathEscape(pub), u.token(), map[string]any{}, nil); err != nil {
			return err
		}
		pubRoom.Members[u.UserID] = "join"
		pubRoom.LocalJoined++
	}
	for i := 0; i < 10; i++ {
		if _, err := sd.message(ctx, frank, pubRoom, "lobby chat "+strconv.Itoa(i)); err != nil {
			return err
		}
	}

	// DM between alice and bob, with m.direct on both sides.
	dm, err := sd.createRoom(ctx, alice, "dm", map[string]any{"preset": "trusted_private_chat", "is_direct": true, "invite": []string{bob.UserID}})
	if err != nil {
		return err
	}
	dmRoom := sd.rec.Rooms[dm]
	if err := sd.do(ctx, "POST", "/_matrix/client/v3/join/"+PathEscape(dm), bob.token(), map[string]any{}, nil); err != nil {
		return err
	}
	dmRoom.Members[bob.UserID] = "join"
	dmRoom.LocalJoined++
	for i := 0; i < 6; i++ {
		if _, err := sd.message(ctx, bob, dmRoom, "dm "+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	if err := sd.accountData(ctx, alice, "m.direct", map[string]any{bob.UserID: []string{dm}}); err != nil {
		return err
	}
	if err := sd.accountData(ctx, bob, "m.direct", map[string]any{alice.UserID: []string{dm}}); err != nil {
		return err
	}

	// A room whose only local member left.
	ab, err := sd.createRoom(ctx, carol, "abandoned", map[string]any{"name": "Left behind", "preset": "private_chat"})
	if err != nil {
		return err
	}
	abRoom := sd.rec.Rooms[ab]
	if _, err := sd.message(ctx, carol, abRoom, "last one out"); err != nil {
		return err
	}
	if err := sd.membership(ctx, carol, abRoom, "leave", carol.UserID, ""); err != nil {
		return err
	}

	// A v1 room (Conduit cannot host it).
	v1, err := sd.createRoom(ctx, bob, "v1", map[string]any{"room_version": "1", "name": "Ancient", "preset": "private_chat"})
	if err != nil {
		return err
	}
	if _, err := sd.message(ctx, bob, sd.rec.Rooms[v1], "hello from room version 1"); err != nil {
		return err
	}

	// An upgraded room: v10 → v11, tombstone and successor.
	old, err := sd.createRoom(ctx, alice, "upgraded-old", map[string]any{"room_version": "10", "name": "Before upgrade", "preset": "private_chat"})
	if err != nil {
		return err
	}
	oldRoom := sd.rec.Rooms[old]
	if err := sd.inviteJoin(ctx, alice, bob, oldRoom); err != nil {
		return err
	}
	if _, err := sd.message(ctx, alice, oldRoom, "before the upgrade"); err != nil {
		return err
	}
	var up struct {
		ReplacementRoom string `json:"replacement_room"`
	}
	if err := sd.do(ctx, "POST", "/_matrix/client/v3/rooms/"+PathEscape(old)+"/upgrade", alice.token(), map[string]any{"new_version": "11"}, &up); err != nil {
		return err
	}
	oldRoom.Successor = up.ReplacementRoom
	sd.rec.Rooms[up.ReplacementRoom] = &Room{RoomID: up.ReplacementRoom, Version: "11", Creator: alice.UserID, Predecessor: old,
		Members: map[string]string{alice.UserID: "join"}, Edits: map[string]string{}, Name: "Before upgrade", LocalJoined: 1}
	sd.rec.Named["upgraded-new"] = up.ReplacementRoom
	if _, err := sd.message(ctx, alice, sd.rec.Rooms[up.ReplacementRoom], "after the upgrade"); err != nil {
		return err
	}

	// Account data, tags, push rules and a pusher.
	if err := sd.accountData(ctx, alice, "org.example.settings", map[string]any{"theme": "dark", "n": 3}); err != nil {
		return err
	}
	if err := sd.roomData(ctx, alice, v10, "org.example.read_marker", map[string]any{"last": "here"}); err != nil {
		return err
	}
	if err := sd.do(ctx, "PUT", "/_matrix/client/v3/user/"+PathEscape(alice.UserID)+"/rooms/"+PathEscape(v10.RoomID)+"/tags/u.work",
		alice.token(), map[string]any{"order": 0.5}, nil); err != nil {
		return err
	}
	alice.Tags[v10.RoomID] = append(alice.Tags[v10.RoomID], "u.work")
	if err := sd.do(ctx, "PUT", "/_matrix/client/v3/user/"+PathEscape(alice.UserID)+"/rooms/"+PathEscape(dm)+"/tags/m.favourite",
		alice.token(), map[string]any{}, nil); err != nil {
		return err
	}
	alice.Tags[dm] = append(alice.Tags[dm], "m.favourite")
	alice.PushRuleID = "tm.mute.lobby"
	if err := sd.do(ctx, "PUT", "/_matrix/client/v3/pushrules/global/override/"+alice.PushRuleID, alice.token(),
		map[string]any{"actions": []any{}, "conditions": []any{map[string]any{"kind": "event_match", "key": "room_id", "pattern": pub}}}, nil); err != nil {
		return err
	}
	if err := sd.do(ctx, "PUT", "/_matrix/client/v3/pushrules/global/override/.m.rule.suppress_notices/enabled", alice.token(),
		map[string]any{"enabled": false}, nil); err != nil {
		return err
	}
	alice.PusherKey = "pushkey-" + randomHex(6)
	if err := sd.do(ctx, "POST", "/_matrix/client/v3/pushers/set", alice.token(), map[string]any{
		"kind": "http", "app_id": "org.example.app", "pushkey": alice.PusherKey, "app_display_name": "Example",
		"device_display_name": "Phone", "lang": "en", "data": map[string]any{"url": "https://push.example.org/_matrix/push/v1/notify"},
	}, nil); err != nil {
		return err
	}

	// The signing-key rotation, then more events in the big rooms.
	if _, err := s.RotateKey(); err != nil {
		return fmt.Errorf("rotating the signing key: %w", err)
	}
	for _, role := range []string{"v10", "v11", "v12", "public"} {
		id, ok := sd.rec.Named[role]
		if !ok {
			continue
		}
		r := sd.rec.Rooms[id]
		for i := 0; i < 5; i++ {
			from := alice
			if role == "public" {
				from = bob
			}
			ev, err := sd.message(ctx, from, r, "after the key rotation "+strconv.Itoa(i))
			if err != nil {
				return err
			}
			sd.rec.Rotation[id] = append(sd.rec.Rotation[id], ev)
		}
	}

	// Account states last (a deactivated user leaves its rooms).
	if err := sd.do(ctx, "POST", "/_synapse/admin/v1/deactivate/"+PathEscape(dave.UserID), s.AdminToken, map[string]any{"erase": false}, nil); err != nil {
		return err
	}
	dave.Deactivated = true
	for _, r := range sd.rec.Rooms {
		if r.Members[dave.UserID] == "join" {
			r.Members[dave.UserID] = "leave"
			r.LocalJoined--
		}
	}
	for _, d := range dave.Devices {
		d.AccessToken = "" // deactivation deletes devices and tokens
	}
	dave.Devices = map[string]*Device{}
	if err := sd.waitParted(ctx, dave); err != nil {
		return err
	}
	if err := sd.do(ctx, "PUT", "/_synapse/admin/v2/users/"+PathEscape(erin.UserID), s.AdminToken, map[string]any{"locked": true}, nil); err != nil {
		return err
	}
	erin.Locked = true
	if err := sd.do(ctx, "POST", "/_synapse/admin/v1/users/"+PathEscape(frank.UserID)+"/shadow_ban", s.AdminToken, map[string]any{}, nil); err != nil {
		return err
	}
	frank.ShadowBanned = true
	sd.rec.Users[gina].Password = ""
	return nil
}

// partingTimeout bounds the wait for Synapse's background parting of a deactivated user.
const partingTimeout = 2 * time.Minute

// waitParted waits until Synapse has parted a deactivated user from every room and its room
// statistics count the members the Record does: deactivation answers before the background task
// that sends the leaves has run, and an export started then still sees the user joined.
func (sd *seeder) waitParted(ctx context.Context, u *User) error {
	ctx, cancel := context.WithTimeout(ctx, partingTimeout)
	defer cancel()
	tick := time.NewTicker(testproc.PollEvery)
	defer tick.Stop()
	for {
		pending, err := sd.partingPending(ctx, u)
		if err != nil || pending == "" {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("synapsetest: %s: %s (%w)", u.UserID, pending, ctx.Err())
		case <-tick.C:
		}
	}
}

// partingPending says what still shows u in a room, or "" once nothing does.
func (sd *seeder) partingPending(ctx context.Context, u *User) (string, error) {
	var joined struct {
		JoinedRooms []string `json:"joined_rooms"`
	}
	if err := sd.do(ctx, "GET", "/_synapse/admin/v1/users/"+PathEscape(u.UserID)+"/joined_rooms", sd.s.AdminToken, nil, &joined); err != nil {
		return "", err
	}
	if len(joined.JoinedRooms) > 0 {
		return fmt.Sprintf("still joined to %d rooms after deactivation", len(joined.JoinedRooms)), nil
	}
	for id, r := range sd.rec.Rooms {
		if _, ok := r.Members[u.UserID]; !ok {
			continue
		}
		var details struct {
			JoinedLocalMembers int `json:"joined_local_members"`
		}
		if err := sd.do(ctx, "GET", "/_synapse/admin/v1/rooms/"+PathEscape(id), sd.s.AdminToken, nil, &details); err != nil {
			return "", err
		}
		if details.JoinedLocalMembers != r.LocalJoined {
			return fmt.Sprintf("room %s: Synapse counts %d joined local members, the seed %d", id, details.JoinedLocalMembers, r.LocalJoined), nil
		}
	}
	return "", nil
}

func (sd *seeder) createRoom(ctx context.Context, u *User, role string, body map[string]any) (string, error) {
	var r struct {
		RoomID string `json:"room_id"`
	}
	if err := sd.do(ctx, "POST", "/_matrix/client/v3/createRoom", u.token(), body, &r); err != nil {
		return "", err
	}
	v, _ := body["room_version"].(string)
	if v == "" {
		var c struct {
			RoomVersion string `json:"room_version"`
		}
		if err := sd.do(ctx, "GET", "/_matrix/client/v3/rooms/"+PathEscape(r.RoomID)+"/state/m.room.create/", u.token(), nil, &c); err != nil {
			return "", err
		}
		v = c.RoomVersion
		if v == "" {
			v = "1"
		}
	}
	name, _ := body["name"].(string)
	room := &Room{RoomID: r.RoomID, Version: v, Creator: u.UserID, Members: map[string]string{u.UserID: "join"},
		Edits: map[string]string{}, Name: name, LocalJoined: 1}
	if inv, ok := body["invite"].([]string); ok {
		for _, id := range inv {
			room.Members[id] = "invite"
		}
	}
	sd.rec.Rooms[r.RoomID] = room
	sd.rec.Named[role] = r.RoomID
	return r.RoomID, nil
}

func (sd *seeder) inviteJoin(ctx context.Context, by, u *User, r *Room) error {
	if err := sd.do(ctx, "POST", "/_matrix/client/v3/rooms/"+PathEscape(r.RoomID)+"/invite", by.token(), map[string]any{"user_id": u.UserID}, nil); err != nil {
		return err
	}
	if err := sd.do(ctx, "POST", "/_matrix/client/v3/join/"+PathEscape(r.RoomID), u.token(), map[string]any{}, nil); err != nil {
		return err
	}
	sd.mu.Lock()
	r.Members[u.UserID] = "join"
	r.LocalJoined++
	sd.mu.Unlock()
	return nil
}

func (sd *seeder) membership(ctx context.Context, by *User, r *Room, action, target, reason string) error {
	path := "/_matrix/client/v3/rooms/" + PathEscape(r.RoomID) + "/" + action
	body := map[string]any{}
	if action == "kick" {
		body["user_id"], body["reason"] = target, reason
	}
	if err := sd.do(ctx, "POST", path, by.token(), body, nil); err != nil {
		return err
	}
	if r.Members[target] == "join" {
		r.LocalJoined--
	}
	r.Members[target] = "leave"
	return nil
}

var txn struct {
	sync.Mutex
	n int
}

func nextTxn() string {
	txn.Lock()
	defer txn.Unlock()
	txn.n++
	return "tm" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(txn.n)
}

func (sd *seeder) send(ctx context.Context, u *User, r *Room, typ string, content map[string]any) (string, error) {
	var out struct {
		EventID string `json:"event_id"`
	}
	if err := sd.do(ctx, "PUT", "/_matrix/client/v3/rooms/"+PathEscape(r.RoomID)+"/send/"+typ+"/"+nextTxn(), u.token(), content, &out); err != nil {
		return "", err
	}
	sd.mu.Lock()
	r.SentByLocals++
	sd.mu.Unlock()
	return out.EventID, nil
}

func (sd *seeder) message(ctx context.Context, u *User, r *Room, body string) (string, error) {
	id, err := sd.send(ctx, u, r, "m.room.message", map[string]any{"msgtype": "m.text", "body": body})
	if err == nil {
		sd.mu.Lock()
		r.Messages = append(r.Messages, id)
		sd.mu.Unlock()
	}
	return id, err
}

// history sends n messages from the users in turn, every 10th edited and every 25th redacted.
func (sd *seeder) history(ctx context.Context, r *Room, from []*User, n int) error {
	for i := 0; i < n; i++ {
		u := from[i%len(from)]
		id, err := sd.message(ctx, u, r, fmt.Sprintf("message %d in %s", i, r.RoomID))
		if err != nil {
			return err
		}
		if i%10 == 3 {
			edit, err := sd.send(ctx, u, r, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* edited",
				"m.new_content": map[string]any{"msgtype": "m.text", "body": "edited " + strconv.Itoa(i)},
				"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": id}})
			if err != nil {
				return err
			}
			sd.mu.Lock()
			r.Edits[edit] = id
			sd.mu.Unlock()
		}
		if i%25 == 7 {
			if err := sd.do(ctx, "PUT", "/_matrix/client/v3/rooms/"+PathEscape(r.RoomID)+"/redact/"+PathEscape(id)+"/"+nextTxn(), u.token(),
				map[string]any{"reason": "oops"}, nil); err != nil {
				return err
			}
			sd.mu.Lock()
			r.Redacted = append(r.Redacted, id)
			r.SentByLocals++
			sd.mu.Unlock()
		}
	}
	return nil
}

func (sd *seeder) stateChanges(ctx context.Context, by *User, r *Room) error {
	base := "/_matrix/client/v3/rooms/" + PathEscape(r.RoomID) + "/state/"
	r.Name, r.Topic = "Room v10 (renamed)", "what we talk about"
	steps := []struct {
		typ     string
		content map[string]any
	}{
		{"m.room.name", map[string]any{"name": r.Name}},
		{"m.room.topic", map[string]any{"topic": r.Topic}},
		{"m.room.join_rules", map[string]any{"join_rule": "invite"}},
	}
	for _, st := range steps {
		if err := sd.do(ctx, "PUT", base+st.typ+"/", by.token(), st.content, nil); err != nil {
			return err
		}
		r.SentByLocals++
	}
	var pl map[string]any
	if err := sd.do(ctx, "GET", base+"m.room.power_levels/", by.token(), nil, &pl); err != nil {
		return err
	}
	users, _ := pl["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	for id, m := range r.Members {
		if m == "join" && id != by.UserID && id != r.Creator {
			users[id] = 50
			break
		}
	}
	pl["users"] = users
	pl["events_default"] = 0
	if err := sd.do(ctx, "PUT", base+"m.room.power_levels/", by.token(), pl, nil); err != nil {
		return err
	}
	r.SentByLocals++
	return nil
}

func (sd *seeder) accountData(ctx context.Context, u *User, typ string, content map[string]any) error {
	if err := sd.do(ctx, "PUT", "/_matrix/client/v3/user/"+PathEscape(u.UserID)+"/account_data/"+typ, u.token(), content, nil); err != nil {
		return err
	}
	b, _ := json.Marshal(content)
	u.AccountData[typ] = b
	return nil
}

func (sd *seeder) roomData(ctx context.Context, u *User, r *Room, typ string, content map[string]any) error {
	if err := sd.do(ctx, "PUT", "/_matrix/client/v3/user/"+PathEscape(u.UserID)+"/rooms/"+PathEscape(r.RoomID)+"/account_data/"+typ, u.token(), content, nil); err != nil {
		return err
	}
	b, _ := json.Marshal(content)
	if u.RoomData[r.RoomID] == nil {
		u.RoomData[r.RoomID] = map[string]json.RawMessage{}
	}
	u.RoomData[r.RoomID][typ] = b
	return nil
}

// devicesAndKeys logs the user in on two more devices (one named), uploads signed device keys,
// one-time and fallback keys for each, cross-signing keys with their signatures, and a key backup.
func (sd *seeder) devicesAndKeys(ctx context.Context, u *User) error {
	for i, name := range []string{"Alice's laptop", ""} {
		var l struct {
			AccessToken string `json:"access_token"`
			DeviceID    string `json:"device_id"`
		}
		body := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.UserID},
			"password": u.Password, "device_id": "ALICEDEV" + strconv.Itoa(i+1)}
		if name != "" {
			body["initial_device_display_name"] = name
		}
		if err := sd.do(ctx, "POST", "/_matrix/client/v3/login", "", body, &l); err != nil {
			return err
		}
		u.Devices[l.DeviceID] = &Device{DeviceID: l.DeviceID, DisplayName: name, AccessToken: l.AccessToken}
	}
	var deviceKey signing.Key
	for id, d := range u.Devices {
		key, err := newDeviceKey("ed25519:" + id)
		if err != nil {
			return err
		}
		if deviceKey.Seed == nil || id == "ALICEDEV1" {
			deviceKey = key
		}
		curve := make([]byte, 32)
		_, _ = rand.Read(curve)
		dk, err := json.Marshal(map[string]any{"user_id": u.UserID, "device_id": id,
			"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
			"keys":       map[string]string{"curve25519:" + id: signing.EncodeBase64(curve), "ed25519:" + id: signing.EncodeBase64(key.PublicKey())}})
		if err != nil {
			return err
		}
		if dk, err = signing.SignJSON(u.UserID, key, dk); err != nil {
			return err
		}
		d.DeviceKeys = dk
		d.OneTimeKeys, d.FallbackKeys = map[string]string{}, map[string]string{}
		otks := map[string]json.RawMessage{}
		for j := 0; j < 3; j++ {
			kid := "signed_curve25519:" + id + "otk" + strconv.Itoa(j)
			k, err := signedCurveKey(u.UserID, key, false)
			if err != nil {
				return err
			}
			otks[kid] = k
			d.OneTimeKeys[kid] = string(k)
		}
		fb, err := signedCurveKey(u.UserID, key, true)
		if err != nil {
			return err
		}
		fbID := "signed_curve25519:" + id + "fb"
		d.FallbackKeys[fbID] = string(fb)
		if err := sd.do(ctx, "POST", "/_matrix/client/v3/keys/upload", d.AccessToken, map[string]any{
			"device_keys": json.RawMessage(dk), "one_time_keys": otks, "fallback_keys": map[string]json.RawMessage{fbID: fb},
		}, nil); err != nil {
			return err
		}
	}
	if err := sd.do(ctx, "PUT", "/_matrix/client/v3/devices/ALICEDEV2", u.token(), map[string]any{"display_name": "Alice's phone"}, nil); err != nil {
		return err
	}
	u.Devices["ALICEDEV2"].DisplayName = "Alice's phone"

	// Cross-signing: master signed by the device, self- and user-signing by the master.
	master, _ := newDeviceKey("")
	self, _ := newDeviceKey("")
	userSigning, _ := newDeviceKey("")
	csKey := func(k signing.Key, usage string) (signing.Key, []byte) {
		pub := signing.EncodeBase64(k.PublicKey())
		k.ID = signing.KeyID("ed25519:" + pub)
		b, _ := json.Marshal(map[string]any{"user_id": u.UserID, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + pub: pub}})
		return k, b
	}
	master, masterJSON := csKey(master, "master")
	self, selfJSON := csKey(self, "self_signing")
	userSigning, usJSON := csKey(userSigning, "user_signing")
	var err error
	if masterJSON, err = signing.SignJSON(u.UserID, deviceKey, masterJSON); err != nil {
		return err
	}
	if selfJSON, err = signing.SignJSON(u.UserID, master, selfJSON); err != nil {
		return err
	}
	if usJSON, err = signing.SignJSON(u.UserID, master, usJSON); err != nil {
		return err
	}
	body := map[string]any{"master_key": json.RawMessage(masterJSON), "self_signing_key": json.RawMessage(selfJSON),
		"user_signing_key": json.RawMessage(usJSON),
		"auth":             map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.UserID}, "password": u.Password}}
	if err := sd.do(ctx, "POST", "/_matrix/client/v3/keys/device_signing/upload", u.token(), body, nil); err != nil {
		return err
	}
	u.CrossSigning = map[string]json.RawMessage{"master": masterJSON, "self_signing": selfJSON, "user_signing": usJSON}
	// The self-signing key signs ALICEDEV1's device keys.
	d1 := u.Devices["ALICEDEV1"]
	var dkObj map[string]any
	_ = json.Unmarshal(d1.DeviceKeys, &dkObj)
	delete(dkObj, "signatures")
	plain, _ := json.Marshal(dkObj)
	signed, err := signing.SignJSON(u.UserID, self, plain)
	if err != nil {
		return err
	}
	if err := sd.do(ctx, "POST", "/_matrix/client/v3/keys/signatures/upload", u.token(),
		map[string]any{u.UserID: map[string]json.RawMessage{"ALICEDEV1": signed}}, nil); err != nil {
		return err
	}

	// Key backup with sessions in two rooms (room IDs need not exist for the backup).
	backupPub := make([]byte, 32)
	_, _ = rand.Read(backupPub)
	auth, _ := json.Marshal(map[string]any{"public_key": signing.EncodeBase64(backupPub)})
	var ver struct {
		Version string `json:"version"`
	}
	if err := sd.do(ctx, "POST", "/_matrix/client/v3/room_keys/version", u.token(),
		map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": json.RawMessage(auth)}, &ver); err != nil {
		return err
	}
	u.BackupVersion, u.BackupAuth = ver.Version, auth
	u.BackupKeys = map[string]map[string]json.RawMessage{}
	rooms := map[string]any{}
	for i, room := range []string{"!backup1:" + sd.s.ServerName, "!backup2:" + sd.s.ServerName} {
		sessions := map[string]any{}
		u.BackupKeys[room] = map[string]json.RawMessage{}
		for j := 0; j < 2; j++ {
			sid := "session" + strconv.Itoa(i) + strconv.Itoa(j)
			data, _ := json.Marshal(map[string]any{"first_message_index": j, "forwarded_count": 0, "is_verified": true,
				"session_data": map[string]any{"ephemeral": randomHex(16), "ciphertext": randomHex(32), "mac": randomHex(8)}})
			sessions[sid] = json.RawMessage(data)
			u.BackupKeys[room][sid] = data
		}
		rooms[room] = map[string]any{"sessions": sessions}
	}
	return sd.do(ctx, "PUT", "/_matrix/client/v3/room_keys/keys?version="+ver.Version, u.token(), map[string]any{"rooms": rooms}, nil)
}

func newDeviceKey(id string) (signing.Key, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return signing.Key{}, err
	}
	return signing.Key{ID: signing.KeyID(id), Seed: seed}, nil
}

func signedCurveKey(userID string, by signing.Key, fallback bool) ([]byte, error) {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	obj := map[string]any{"key": signing.EncodeBase64(k)}
	if fallback {
		obj["fallback"] = true
	}
	b, _ := json.Marshal(obj)
	return signing.SignJSON(userID, by, b)
}
