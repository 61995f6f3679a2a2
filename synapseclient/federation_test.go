package synapseclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/fixtures"
)

const roomA = "!FxOZIdiZlcgPsSDLHo:synapse.test"

func TestBackfillReturnsExactBytes(t *testing.T) {
	f := newFake(t)
	rec := f.serveFixture("fed_backfill_a")
	q := fixtureQuery(t, rec)
	c, _ := newTestClient(t, f)
	tx, err := c.Federation().Backfill(ctxT(t), roomA, q["v"], 100)
	if err != nil {
		t.Fatal(err)
	}
	f.assertSigned()
	if got := f.seen()[0].URI; got != rec.Request.Path {
		t.Errorf("URI = %s\nwant  %s", got, rec.Request.Path)
	}
	want := rawList(t, rec.Response.Body, "pdus")
	if len(tx.PDUs) != 100 || len(want) != 100 {
		t.Fatalf("%d PDUs, want 100", len(tx.PDUs))
	}
	for i, p := range tx.PDUs {
		if !bytes.Equal(p.Raw, want[i]) {
			t.Fatalf("PDU %d bytes differ from what the server sent", i)
		}
		if !bytes.Contains(rec.Response.Body, p.Raw) {
			t.Fatalf("PDU %d is not a slice of the served body", i)
		}
		if p.EventID != "" || p.RoomID != roomA || len(p.AuthEvents) == 0 || len(p.PrevEvents) == 0 {
			t.Errorf("PDU %d parsed as %+v", i, p)
		}
		if i > 0 && p.Depth >= tx.PDUs[i-1].Depth {
			t.Errorf("depth not strictly descending at %d", i)
		}
	}
	if tx.PDUs[0].Depth != 264 || tx.PDUs[99].Depth != 165 {
		t.Errorf("depths %d..%d, want 264..165", tx.PDUs[0].Depth, tx.PDUs[99].Depth)
	}
	var hdr struct {
		Origin string `json:"origin"`
		TS     int64  `json:"origin_server_ts"`
	}
	json.Unmarshal(rec.Response.Body, &hdr)
	if tx.Origin != testServer || tx.OriginServerTS != hdr.TS {
		t.Errorf("origin %q ts %d", tx.Origin, tx.OriginServerTS)
	}
}

func TestBackfillV1RoomPairs(t *testing.T) {
	f := newFake(t)
	rec := f.serveFixture("fed_backfill_e_v1")
	c, _ := newTestClient(t, f)
	tx, err := c.Federation().Backfill(ctxT(t), "!nyXaMgLQEkrNsBiNHP:synapse.test", fixtureQuery(t, rec)["v"], 100)
	if err != nil {
		t.Fatal(err)
	}
	f.assertSigned()
	if len(tx.PDUs) != 17 {
		t.Fatalf("%d PDUs, want 17", len(tx.PDUs))
	}
	want := rawList(t, rec.Response.Body, "pdus")
	for i, p := range tx.PDUs {
		if !strings.HasPrefix(p.EventID, "$") || !strings.HasSuffix(p.EventID, ":synapse.test") {
			t.Errorf("v1 PDU %d event_id %q", i, p.EventID)
		}
		for _, id := range append(append([]string{}, p.PrevEvents...), p.AuthEvents...) {
			if !strings.HasPrefix(id, "$") || !strings.HasSuffix(id, ":synapse.test") {
				t.Errorf("v1 PDU %d edge %q not reduced to an ID", i, id)
			}
		}
		if !bytes.Equal(p.Raw, want[i]) {
			t.Errorf("PDU %d bytes differ", i)
		}
	}
	create := tx.PDUs[len(tx.PDUs)-1]
	if create.Type != "m.room.create" || create.StateKey == nil || *create.StateKey != "" || len(create.PrevEvents) != 0 {
		t.Errorf("last PDU = %s state_key %v prev %v", create.Type, create.StateKey, create.PrevEvents)
	}
}

func TestHostNotInRoomIsTyped(t *testing.T) {
	f := newFake(t)
	bf := f.serveFixture("fed_backfill_d_not_joined")
	f.serveFixture("fed_event_d_not_joined")
	si := f.serveFixture("fed_state_ids_d_not_joined")
	c, sl := newTestClient(t, f)
	fed := c.Federation()
	_, err := fed.Backfill(ctxT(t), "!VVhmvbqMOMIFZlwJpY:synapse.test", fixtureQuery(t, bf)["v"], 100)
	var e *Error
	if !errors.Is(err, ErrHostNotInRoom) || !errors.Is(err, ErrForbidden) || !errors.As(err, &e) || e.ErrCode != "M_FORBIDDEN" || e.Status != 403 {
		t.Fatalf("backfill: %v", err)
	}
	if !strings.Contains(err.Error(), "GET /_matrix/federation/v1/backfill/{roomId}") || !strings.Contains(err.Error(), "M_FORBIDDEN") {
		t.Errorf("error text %q should name the endpoint and errcode", err)
	}
	if _, err = fed.Event(ctxT(t), "$y4gfRSNAHasRWtvsowIBOJj6xrJll0VJoJBagqnIzXw"); !errors.Is(err, ErrHostNotInRoom) {
		t.Errorf("event: %v", err)
	}
	if _, err = fed.StateIDs(ctxT(t), "!VVhmvbqMOMIFZlwJpY:synapse.test", fixtureQuery(t, si).Get("event_id")); !errors.Is(err, ErrHostNotInRoom) {
		t.Errorf("state_ids: %v", err)
	}
	if len(sl.get()) != 0 {
		t.Errorf("403 was retried")
	}
	if !IsHostNotInRoom(403, "Host not in room.") || IsHostNotInRoom(403, "You are not a server admin") {
		t.Error("IsHostNotInRoom")
	}
}

func TestEventNotFoundEmptyStringBody(t *testing.T) {
	f := newFake(t)
	f.serveFixture("fed_event_nonexistent")
	c, sl := newTestClient(t, f)
	_, err := c.Federation().Event(ctxT(t), "$doesnotexist0000000000000000000000000000000")
	var e *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) || e.Status != 404 || string(e.Body) != `""` || e.ErrCode != "" {
		t.Fatalf("err = %#v", err)
	}
	if len(f.seen()) != 1 || len(sl.get()) != 0 {
		t.Error("404 was retried")
	}
	f.assertSigned()
}

func TestBackfillWithoutLimitErrorHasNoErrcode(t *testing.T) {
	f := newFake(t)
	rec := fixtures.Load(t, "fed_backfill_a_no_limit")
	e := newError("GET x", rec.Response.Status, rec.Response.Body, 0)
	if e.ErrCode != "" || e.Message != "Did not include limit param" || e.Status != 400 {
		t.Errorf("parsed %+v", e)
	}
	c, _ := newTestClient(t, f)
	if _, err := c.Federation().Backfill(ctxT(t), roomA, []string{"$x"}, 0); err == nil || len(f.seen()) != 0 {
		t.Errorf("limit 0 should be refused locally: %v", err)
	}
}

func TestEventSignedAndParsed(t *testing.T) {
	f := newFake(t)
	rec := f.serveFixture("fed_event_a_latest")
	v1 := f.serveFixture("fed_event_e_v1")
	c, _ := newTestClient(t, f)
	tx, err := c.Federation().Event(ctxT(t), "$gccEMmLNe4QPXsoArt7kezDyb23I1y7kRR6nZ6oevD0")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tx.PDUs[0].Raw, rawList(t, rec.Response.Body, "pdus")[0]) || tx.PDUs[0].Depth != 264 || tx.Origin != testServer {
		t.Errorf("event = %+v", tx.PDUs[0])
	}
	tx1, err := c.Federation().Event(ctxT(t), "$179533051216WEfPP:synapse.test")
	if err != nil {
		t.Fatal(err)
	}
	if tx1.PDUs[0].EventID != "$179533051216WEfPP:synapse.test" {
		t.Errorf("v1 event id %q", tx1.PDUs[0].EventID)
	}
	seen := f.seen()
	if seen[0].URI != rec.Request.Path || seen[1].URI != v1.Request.Path {
		t.Errorf("URIs %s %s", seen[0].URI, seen[1].URI)
	}
	for _, r := range seen {
		if !strings.HasPrefix(r.Auth, `X-Matrix origin="synapse.test",destination="synapse.test",key="ed25519:a_test",sig="`) {
			t.Errorf("Authorization = %q", r.Auth)
		}
	}
	f.assertSigned()
}

func TestGetMissingEventsSignedPOST(t *testing.T) {
	f := newFake(t)
	rec := f.serveFixture("fed_get_missing_events_a")
	c, _ := newTestClient(t, f)
	var req MissingEventsRequest
	if err := json.Unmarshal(rec.Request.Body, &req); err != nil {
		t.Fatal(err)
	}
	evs, err := c.Federation().GetMissingEvents(ctxT(t), roomA, req)
	if err != nil {
		t.Fatal(err)
	}
	f.assertSigned()
	r := f.seen()[0]
	var sent, recorded any
	json.Unmarshal(r.Body, &sent)
	json.Unmarshal(rec.Request.Body, &recorded)
	sb, _ := json.Marshal(sent)
	rb, _ := json.Marshal(recorded)
	if string(sb) != string(rb) || r.URI != rec.Request.Path || r.Method != "POST" {
		t.Errorf("sent %s %s %s, recorded %s", r.Method, r.URI, sb, rb)
	}
	want := rawList(t, rec.Response.Body, "events")
	if len(evs) != 10 || evs[0].Depth != 254 || evs[9].Depth != 263 {
		t.Fatalf("%d events", len(evs))
	}
	for i := range evs {
		if !bytes.Equal(evs[i].Raw, want[i]) {
			t.Errorf("event %d bytes differ", i)
		}
	}
}

func TestStateStateIDsEventAuthMakeJoin(t *testing.T) {
	f := newFake(t)
	si := f.serveFixture("fed_state_ids_a")
	st := f.serveFixture("fed_state_a")
	ea := f.serveFixture("fed_event_auth_a")
	mj := f.serveFixture("fed_make_join_a_verlist")
	mj1 := f.serveFixture("fed_make_join_e_v1")
	c, _ := newTestClient(t, f)
	fed := c.Federation()
	ctx := ctxT(t)
	eventID := fixtureQuery(t, si).Get("event_id")

	ids, err := fed.StateIDs(ctx, roomA, eventID)
	if err != nil || len(ids.PDUIDs) != 9 || len(ids.AuthChainIDs) != 5 {
		t.Fatalf("state_ids = %+v, %v", ids, err)
	}
	state, err := fed.State(ctx, roomA, eventID)
	if err != nil {
		t.Fatal(err)
	}
	if len(state.PDUs) != len(rawList(t, st.Response.Body, "pdus")) || len(state.AuthChain) != len(rawList(t, st.Response.Body, "auth_chain")) {
		t.Errorf("state %d + %d", len(state.PDUs), len(state.AuthChain))
	}
	for _, p := range state.PDUs {
		if !p.IsState() {
			t.Errorf("state PDU %s without state_key", p.Type)
		}
	}
	chain, err := fed.EventAuth(ctx, roomA, eventID)
	if err != nil || len(chain) != 7 {
		t.Fatalf("event_auth: %d, %v", len(chain), err)
	}
	vers := fixtureQuery(t, mj)["ver"]
	join, err := fed.MakeJoin(ctx, roomA, "@alice:synapse.test", vers)
	if err != nil {
		t.Fatal(err)
	}
	var mjBody struct {
		Event json.RawMessage `json:"event"`
	}
	json.Unmarshal(mj.Response.Body, &mjBody)
	if join.RoomVersion != "10" || !bytes.Equal(join.Event, mjBody.Event) {
		t.Errorf("make_join version %q", join.RoomVersion)
	}
	join1, err := fed.MakeJoin(ctx, "!nyXaMgLQEkrNsBiNHP:synapse.test", "@alice:synapse.test", []string{"1"})
	if err != nil || join1.RoomVersion != "1" {
		t.Errorf("v1 make_join = %+v, %v", join1, err)
	}
	seen := f.seen()
	for i, rec := range []*fixtures.Recording{si, st, ea, mj, mj1} {
		if seen[i].URI != rec.Request.Path {
			t.Errorf("URI %s\nwant %s", seen[i].URI, rec.Request.Path)
		}
	}
	f.assertSigned()
}

func TestKeysAndVersionUnauthenticated(t *testing.T) {
	f := newFake(t)
	keys := f.serveFixture("key_v2_server")
	f.serveFixture("fed_version")
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.Identity = nil })
	sk, err := c.Federation().ServerKeys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sk.Raw, keys.Response.Body) || sk.ServerName != testServer || sk.VerifyKeys["ed25519:a_cNMa"].Key != "Y9OGHnwyOHyx3CQsHFV70oVUocAEoja7OGUtHSoJmH4" {
		t.Errorf("keys = %+v", sk)
	}
	v, err := c.Federation().Version(ctxT(t))
	if err != nil || v.Server.Name != "Synapse" || v.Server.Version != "1.67.0" {
		t.Errorf("version = %+v, %v", v, err)
	}
	for _, r := range f.seen() {
		if r.Auth != "" {
			t.Errorf("%s sent Authorization", r.URI)
		}
	}
}

func TestFederationWithoutIdentityFailsLocally(t *testing.T) {
	f := newFake(t)
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.Identity = nil })
	_, err := c.Federation().Event(ctxT(t), "$x")
	if !errors.Is(err, ErrNotConfigured) || len(f.seen()) != 0 {
		t.Fatalf("err = %v", err)
	}
}

func TestFederationURLSeparateFromBase(t *testing.T) {
	client, fed := newFake(t), newFake(t)
	fed.serveFixture("fed_version")
	c, _ := newTestClient(t, client, func(cfg *Config) { cfg.FederationURL = fed.srv.URL + "/" })
	if _, err := c.Federation().Version(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if len(client.seen()) != 0 || len(fed.seen()) != 1 {
		t.Errorf("requests: client listener %d, federation listener %d", len(client.seen()), len(fed.seen()))
	}
}
