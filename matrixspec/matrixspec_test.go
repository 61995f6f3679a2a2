package matrixspec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestErrorIsByErrcodeAndStatus(t *testing.T) {
	err := fmt.Errorf("join: %w", Forbidden("banned"))
	if !errors.Is(err, KindForbidden) {
		t.Errorf("errors.Is(%v, KindForbidden) = false", err)
	}
	if errors.Is(err, KindBadJSON) {
		t.Errorf("a Forbidden answer is a BadJSON one")
	}
	if !errors.Is(err, New(http.StatusForbidden, CodeForbidden, "other words")) {
		t.Errorf("the same status and errcode do not match")
	}
	if errors.Is(err, New(http.StatusBadRequest, CodeForbidden, "")) {
		t.Errorf("another status matches")
	}
	if !errors.Is(IncompatibleRoomVersion("1"), KindIncompatibleRoomVersion) {
		t.Errorf("IncompatibleRoomVersion is not of its kind")
	}
}

func TestErrorBody(t *testing.T) {
	e := IncompatibleRoomVersion("3")
	e.Allow = "GET"
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"errcode":"M_INCOMPATIBLE_ROOM_VERSION","error":"Your homeserver does not support the features required to interact with this room","room_version":"3"}`
	if string(b) != want {
		t.Errorf("body = %s\nwant   %s", b, want)
	}
}

func TestFor(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{BadJSON("x"), 400, CodeBadJSON},
		{fmt.Errorf("a: %w", ErrNotFound), 404, CodeNotFound},
		{ErrHostNotInRoom, 403, CodeForbidden},
		{ErrUpstreamUnavailable, 502, CodeUnknown},
		{ErrNotVerified, 502, CodeUnknown},
		{ErrIncomplete, 502, CodeUnknown},
		{fmt.Errorf("%w: %w", ErrIncomplete, context.DeadlineExceeded), 504, CodeUnknown},
		{context.DeadlineExceeded, 504, CodeUnknown},
		{errors.New("other"), 500, CodeUnknown},
	} {
		got := For(c.err)
		if got.Status != c.status || got.ErrCode != c.code {
			t.Errorf("For(%v) = %d %s, want %d %s", c.err, got.Status, got.ErrCode, c.status, c.code)
		}
	}
}
