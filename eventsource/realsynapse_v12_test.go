//go:build synapse

package eventsource

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/federation"
	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// TestRealSynapseVersion12Room builds a version 12 room on a real Synapse (an additional creator,
// a member promoted, messages, an edit, a redaction, a topic change), then has the Conduit-like
// consumer backfill it through the shim down to m.room.create — exactly the events Synapse's
// admin API lists, every one verified — and joins a new local user through the shim's
// make_join/send_join, whose answer passes gomatrixserverlib's CheckSendJoinResponse; then
// archives the room into a fresh cache and, Synapse stopped, backfills it whole from that cache.
func TestRealSynapseVersion12Room(t *testing.T) {
	s := synapsetest.Start(t, synapsetest.Options{})
	if !s.SupportsRoomVersion("12") {
		t.Skipf("Synapse %s has no room version 12", s.Version)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	do := func(method, path, token string, body, out any) {
		t.Helper()
		if err := s.Do(ctx, method, path, token, body, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	user := func(localpart string) (string, string) {
		t.Helper()
		id := "@" + localpart + ":" + s.ServerName
		do("PUT", "/_synapse/admin/v2/users/"+url.PathEscape(id), s.AdminToken, map[string]any{"password": "pw-" + localpart, "displayname": localpart}, nil)
		var login struct {
			AccessToken string `json:"access_token"`
		}
		do("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]string{"type": "m.id.user", "user": localpart}, "password": "pw-" + localpart}, &login)
		return id, login.AccessToken
	}
	alice, aliceTok := user("alice")
	bob, bobTok := user("bob")
	carol, carolTok := user("carol")
	dave, _ := user("dave") // joins through the shim only

	var created struct {
		RoomID string `json:"room_id"`
	}
	do("POST", "/_matrix/client/v3/createRoom", aliceTok, map[string]any{"room_version": "12", "preset": "public_chat",
		"name": "v12 on real Synapse", "creation_content": map[string]any{"additional_creators": []string{bob}}}, &created)
	roomID := created.RoomID
	if _, ok := signing.CreateEventIDOf(roomID); !ok {
		t.Fatalf("Synapse's v12 room ID %s has a server part", roomID)
	}
	for _, tok := range []string{bobTok, carolTok} {
		do("POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), tok, map[string]any{}, nil)
	}
	txn := 0
	send := func(tok, typ string, content map[string]any) string {
		t.Helper()
		txn++
		var r struct {
			EventID string `json:"event_id"`
		}
		do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/%s/t%d", url.PathEscape(roomID), typ, txn), tok, content, &r)
		return r.EventID
	}
	var first string
	for i := range 30 {
		tok := []string{aliceTok, bobTok, carolTok}[i%3]
		id := send(tok, "m.room.message", map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d", i)})
		if first == "" {
			first = id
		}
	}
	send(aliceTok, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* edited", "m.new_content": map[string]any{"msgtype": "m.text", "body": "edited"},
		"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": first}})
	do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/redact/%s/r1", url.PathEscape(roomID), url.PathEscape(first)), aliceTok, map[string]any{"reason": "test"}, nil)
	do("PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.topic/", bobTok, map[string]any{"topic": "set by an additional creator"}, nil)
	var pl map[string]any
	do("GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.power_levels/", aliceTok, nil, &pl)
	users, _ := pl["users"].(map[string]any)
	if _, ok := users[alice]; ok {
		t.Fatalf("Synapse lists the creator in power_levels users: %v", users)
	}
	if users == nil {
		users = map[string]any{}
	}
	users[carol] = 50
	pl["users"] = users
	do("PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/m.room.power_levels/", aliceTok, pl, nil)
	send(carolTok, "m.room.message", map[string]any{"msgtype": "m.text", "body": "last"})

	// The shim over the real Synapse.
	id := s.Identity()
	client, err := synapseclient.New(synapseclient.Config{BaseURL: s.BaseURL, ServerName: s.ServerName, Identity: id,
		AdminToken: s.AdminToken, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	keys := conduitlike.StaticKeys{}
	for _, k := range s.Keys() {
		keys.Add(s.ServerName, string(k.ID), k.PublicKey(), 0)
	}
	_, shimURL := realShim(t, client, id, filepath.Join(t.TempDir(), "serve.db"))
	consumer := &conduitlike.Consumer{Identity: id, Destination: s.ServerName, BaseURL: shimURL, Keys: keys}

	// What Synapse holds, read independently of the shim: the admin API's messages, oldest first.
	var want []string
	var createPDU synapseclient.PDU
	opts := synapseclient.MessagesOptions{Dir: "f", Limit: 100}
	for range 20 {
		page, err := client.Admin().RoomMessages(ctx, roomID, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Chunk {
			want = append(want, p.EventID)
			if p.Type == "m.room.create" {
				createPDU = p
			}
		}
		if page.End == "" || len(page.Chunk) == 0 {
			break
		}
		opts.From = page.End
	}
	if createPDU.RoomID != roomID || createPDU.EventID != "$"+roomID[1:] {
		t.Fatalf("the create event from the admin API: room %q, ID %q", createPDU.RoomID, createPDU.EventID)
	}
	// Synapse's admin raw forms give the create event a room_id it was signed without; the
	// federation API does not. synapseclient hands back the signed PDU.
	var fe struct {
		Event json.RawMessage `json:"event"`
	}
	do("GET", "/_synapse/admin/v1/fetch_event/"+url.PathEscape(createPDU.EventID), s.AdminToken, nil, &fe)
	if gjson.GetBytes(fe.Event, "room_id").String() != roomID {
		t.Logf("Synapse %s no longer adds room_id to the v12 create event in fetch_event: %s", s.Version, fe.Event)
	}
	tx, err := client.Federation().Event(ctx, createPDU.EventID)
	if err != nil || gjson.GetBytes(tx.PDUs[0].Raw, "room_id").Exists() {
		t.Fatalf("federation /event of the create event: %v", err)
	}
	for _, p := range []synapseclient.PDU{createPDU, tx.PDUs[0]} {
		if gjson.GetBytes(p.Raw, "room_id").Exists() || p.RoomID != roomID {
			t.Fatalf("create event as synapseclient gives it: room %q, %s", p.RoomID, p.Raw)
		}
		bare, _ := sjson.DeleteBytes(p.Raw, "event_id") // the admin form's additions that are not signed
		bare, _ = sjson.DeleteBytes(bare, "unsigned")
		if id, err := signing.EventID("12", bare); err != nil || id != createPDU.EventID {
			t.Fatalf("create event's reference hash %s (%v), want %s", id, err, createPDU.EventID)
		}
	}
	fx, err := client.Admin().ForwardExtremities(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	var heads []string
	for _, f := range fx {
		heads = append(heads, f.EventID)
	}
	res, err := consumer.BackfillRoom(ctx, roomID, "12", heads)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range res.Timeline {
		if e.Outcome == conduitlike.Rejected {
			t.Errorf("rejected %s: %s", e.EventID, e.Reason)
		}
		got = append(got, e.EventID)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !res.ReachedCreate || !slices.Equal(got, want) {
		t.Fatalf("backfill: create reached %v, %d events; Synapse holds %d", res.ReachedCreate, len(got), len(want))
	}
	if res.Count(conduitlike.Redacted) != 1 {
		t.Errorf("%d redacted events, want the one redaction's target", res.Count(conduitlike.Redacted))
	}

	// A join of dave through the shim, as Conduit makes it.
	versions := url.Values{}
	for _, v := range []string{"6", "7", "8", "9", "10", "11", "12", "3", "4", "5"} {
		versions.Add("ver", v)
	}
	var mj struct {
		RoomVersion string          `json:"room_version"`
		Event       json.RawMessage `json:"event"`
	}
	if err := consumer.Request(ctx, "GET", "/_matrix/federation/v1/make_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(dave)+"?"+versions.Encode(), nil, &mj); err != nil {
		t.Fatal(err)
	}
	if mj.RoomVersion != "12" || slices.ContainsFunc(gjson.GetBytes(mj.Event, "auth_events").Array(), func(r gjson.Result) bool { return r.String() == "$"+roomID[1:] }) {
		t.Fatalf("make_join: %s %s", mj.RoomVersion, mj.Event)
	}
	var proto gmsl.ProtoEvent
	if err := json.Unmarshal(mj.Event, &proto); err != nil {
		t.Fatal(err)
	}
	ver := gmsl.MustGetRoomVersion(gmsl.RoomVersionV12)
	key := id.SigningKey()
	join, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), spec.ServerName(s.ServerName), gmsl.KeyID(key.ID), key.PrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	var resp fclient.RespSendJoin
	if err := consumer.Request(ctx, "PUT", "/_matrix/federation/v2/send_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(join.EventID()), join.JSON(), &resp); err != nil {
		t.Fatal(err)
	}
	missing := func(gmsl.RoomVersion, []string) ([]gmsl.PDU, error) {
		return nil, fmt.Errorf("an auth event is missing")
	}
	verifier := conduitlike.Verifier{Keys: keys}
	checked, err := gmsl.CheckSendJoinResponse(ctx, gmsl.RoomVersionV12, &resp, verifier, join, missing, userIDForSender)
	if err != nil {
		t.Fatalf("gomatrixserverlib's send_join check: %v", err)
	}
	if len(checked.GetStateEvents()) != len(resp.StateEvents) || len(checked.GetAuthEvents()) != len(resp.AuthEvents) {
		t.Fatalf("gomatrixserverlib dropped events: state %d of %d, auth chain %d of %d",
			len(checked.GetStateEvents()), len(resp.StateEvents), len(checked.GetAuthEvents()), len(resp.AuthEvents))
	}

	// shim archive into a fresh cache, then Synapse stops: the room is served whole from it.
	archived, archiveURL := realShim(t, client, id, filepath.Join(t.TempDir(), "archive.db"))
	sum := archived.ArchiveRoom(ctx, roomID, heads, nil)
	if sum.Err != nil || !sum.Complete || sum.Events != int64(len(want)) || sum.Failed() != 0 || sum.RoomVersion != "12" {
		t.Fatalf("archive: %+v, Synapse holds %d events", sum, len(want))
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	fromCache := &conduitlike.Consumer{Identity: id, Destination: s.ServerName, BaseURL: archiveURL, Keys: keys}
	res, err = fromCache.BackfillRoom(ctx, roomID, "12", heads)
	if err != nil {
		t.Fatalf("backfill from the archive with Synapse stopped: %v", err)
	}
	got = got[:0]
	for _, e := range res.Timeline {
		got = append(got, e.EventID)
	}
	slices.Sort(got)
	if !res.ReachedCreate || !slices.Equal(got, want) || res.Count(conduitlike.Rejected) != 0 {
		t.Fatalf("backfill from the archive: create %v, %d events of %d", res.ReachedCreate, len(got), len(want))
	}
}

// realShim is the shim over a real Synapse with its own cache at path: the Source and its URL.
func realShim(t *testing.T, client *synapseclient.Client, id *signing.Identity, path string) (*Source, string) {
	t.Helper()
	cache, err := eventcache.Open(path, eventcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	src, err := New(Config{Identity: id, Cache: cache, Upstream: client.Federation(), Admin: client.Admin(),
		Keys: &NotaryKeys{Client: client.Federation(), Identity: id}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := federation.New(federation.Config{Identity: id, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	shim := httptest.NewServer(srv)
	t.Cleanup(shim.Close)
	return src, shim.URL
}
