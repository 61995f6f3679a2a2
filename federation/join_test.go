package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/matrixspec"
)

// fakeJoins is a fakeSource that also builds and accepts joins.
type fakeJoins struct {
	*fakeSource
	makeJoin func(ctx context.Context, room, user string, versions []string) (string, json.RawMessage, error)
	sendJoin func(ctx context.Context, room, event string, pdu []byte) ([]PDU, []PDU, error)
}

func (f *fakeJoins) MakeJoin(ctx context.Context, room, user string, versions []string) (string, json.RawMessage, error) {
	f.calls++
	return f.makeJoin(ctx, room, user, versions)
}

func (f *fakeJoins) SendJoin(ctx context.Context, room, event string, pdu []byte) ([]PDU, []PDU, error) {
	f.calls++
	return f.sendJoin(ctx, room, event, pdu)
}

func newJoinShim(t *testing.T, f *fakeJoins) *testShim {
	s := newTestShim(t, f.fakeSource, func(c *Config) { c.Source = f })
	return s
}

func TestMakeJoinPassesTheRequestOn(t *testing.T) {
	var got []string
	f := &fakeJoins{fakeSource: serving()}
	f.makeJoin = func(_ context.Context, room, user string, versions []string) (string, json.RawMessage, error) {
		got = append([]string{room, user}, versions...)
		return "10", json.RawMessage(`{"type":"m.room.member"}`), nil
	}
	s := newJoinShim(t, f)
	code, _, raw := s.do("GET", "/_matrix/federation/v1/make_join/%21r%3Ahs.example/%40al%2Fice%3Ahs.example?ver=6&ver=10&ver=3", nil)
	if code != 200 || raw != `{"event":{"type":"m.room.member"},"room_version":"10"}` {
		t.Fatalf("make_join: %d %s", code, raw)
	}
	if fmt.Sprint(got) != "[!r:hs.example @al/ice:hs.example 6 10 3]" {
		t.Fatalf("make_join asked the source %v", got)
	}
	// No ver at all means version 1 only, as in Synapse.
	s.do("GET", "/_matrix/federation/v1/make_join/%21r%3Ahs.example/%40alice%3Ahs.example", nil)
	if fmt.Sprint(got[2:]) != "[1]" {
		t.Fatalf("make_join without ver asked for %v", got[2:])
	}
}

func TestMakeJoinRefusesOtherServersUsersWithoutAskingTheSource(t *testing.T) {
	f := &fakeJoins{fakeSource: serving(), makeJoin: func(context.Context, string, string, []string) (string, json.RawMessage, error) {
		return "10", json.RawMessage(`{}`), nil
	}}
	s := newJoinShim(t, f)
	for _, c := range []struct {
		user    string
		status  int
		errcode string
	}{
		{"%40rita%3Aremote.example", 403, "M_FORBIDDEN"},
		{"%40rita%3Ahs.example.evil", 403, "M_FORBIDDEN"},
		{"alice", 400, "M_INVALID_PARAM"},
		{"%40alice", 400, "M_INVALID_PARAM"},
	} {
		code, m, raw := s.do("GET", "/_matrix/federation/v1/make_join/%21r%3Ahs.example/"+c.user+"?ver=10", nil)
		if code != c.status || m["errcode"] != c.errcode {
			t.Errorf("%s: %d %s", c.user, code, raw)
		}
	}
	if f.calls != 0 {
		t.Fatalf("the source was asked %d times", f.calls)
	}
}

func TestJoinErrorsBecomeMatrixErrors(t *testing.T) {
	f := &fakeJoins{fakeSource: serving()}
	s := newJoinShim(t, f)
	for _, c := range []struct {
		err     error
		status  int
		errcode string
	}{
		{matrixspec.IncompatibleRoomVersion("1"), 400, "M_INCOMPATIBLE_ROOM_VERSION"},
		{fmt.Errorf("wrapped: %w", matrixspec.Forbidden("banned")), 403, "M_FORBIDDEN"},
		{matrixspec.BadJSON("no"), 400, "M_BAD_JSON"},
		{matrixspec.ErrNotFound, 404, "M_NOT_FOUND"},
		{matrixspec.ErrUpstreamUnavailable, 502, "M_UNKNOWN"},
	} {
		f.makeJoin = func(context.Context, string, string, []string) (string, json.RawMessage, error) {
			return "", nil, c.err
		}
		code, m, raw := s.do("GET", "/_matrix/federation/v1/make_join/%21r%3Ahs.example/%40a%3Ahs.example?ver=10", nil)
		if code != c.status || m["errcode"] != c.errcode {
			t.Errorf("%v: %d %s", c.err, code, raw)
		}
		if c.errcode == "M_INCOMPATIBLE_ROOM_VERSION" && m["room_version"] != "1" {
			t.Errorf("M_INCOMPATIBLE_ROOM_VERSION without room_version: %s", raw)
		}
		if c.errcode != "M_INCOMPATIBLE_ROOM_VERSION" && strings.Contains(raw, "room_version") {
			t.Errorf("%s carries room_version", raw)
		}
	}
}

func TestSendJoinAnswersStateAndAuthChainWithoutEvent(t *testing.T) {
	var gotBody string
	f := &fakeJoins{fakeSource: serving()}
	f.sendJoin = func(_ context.Context, room, event string, pdu []byte) ([]PDU, []PDU, error) {
		if room != "!r:hs.example" || event != "$j/x+y" {
			t.Errorf("send_join for %s %s", room, event)
		}
		gotBody = string(pdu)
		return []PDU{PDU(`{"s":1}`), PDU(`{"s" : 2}`)}, []PDU{PDU(`{"a":1}`)}, nil
	}
	s := newJoinShim(t, f)
	body := []byte(`{"type":"m.room.member"}`)
	code, _, raw := s.do("PUT", "/_matrix/federation/v2/send_join/%21r%3Ahs.example/%24j%2Fx%2By", body)
	if code != 200 || raw != `{"state":[{"s":1},{"s" : 2}],"auth_chain":[{"a":1}]}` || gotBody != string(body) {
		t.Fatalf("v2 send_join: %d %s (source got %s)", code, raw, gotBody)
	}
	code, _, raw = s.do("PUT", "/_matrix/federation/v1/send_join/%21r%3Ahs.example/%24j%2Fx%2By", body)
	if code != 200 || raw != `[200,{"state":[{"s":1},{"s" : 2}],"auth_chain":[{"a":1}]}]` {
		t.Fatalf("v1 send_join: %d %s", code, raw)
	}
	for _, bad := range []string{`[1]`, `"a string"`, ``} {
		before := f.calls
		code, m, raw := s.do("PUT", "/_matrix/federation/v2/send_join/%21r%3Ahs.example/%24j", []byte(bad))
		if code != 400 || m["errcode"] != "M_NOT_JSON" || f.calls != before {
			t.Errorf("body %q: %d %s", bad, code, raw)
		}
	}
	f.sendJoin = func(context.Context, string, string, []byte) ([]PDU, []PDU, error) {
		return nil, nil, fmt.Errorf("check: %w", matrixspec.Forbidden("signature"))
	}
	if code, m, raw := s.do("PUT", "/_matrix/federation/v2/send_join/%21r%3Ahs.example/%24j", body); code != 403 || m["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("refused join: %d %s", code, raw)
	}
}

func TestJoinsNeedAJoinSourceAndASignedRequest(t *testing.T) {
	s := newTestShim(t, serving()) // a plain EventSource: no joins
	if code, m, raw := s.do("GET", "/_matrix/federation/v1/make_join/%21r%3Ahs.example/%40a%3Ahs.example?ver=10", nil); code != 404 || m["errcode"] != "M_UNRECOGNIZED" {
		t.Fatalf("make_join without a JoinSource: %d %s", code, raw)
	}
	f := &fakeJoins{fakeSource: serving(), sendJoin: func(context.Context, string, string, []byte) ([]PDU, []PDU, error) {
		return nil, nil, errors.New("must not be called")
	}}
	j := newJoinShim(t, f)
	code, m, raw := j.do("PUT", "/_matrix/federation/v2/send_join/%21r%3Ahs.example/%24j", []byte(`{}`),
		func(r *http.Request) { r.Header.Del("Authorization") })
	if code != 401 || m["errcode"] != "M_UNAUTHORIZED" || f.calls != 0 {
		t.Fatalf("unsigned send_join: %d %s", code, raw)
	}
}
