// Package matrixspec is the Matrix vocabulary the federation server and the event source share:
// error answers (an HTTP status and an errcode), the errors an event source returns, and limits.
package matrixspec

import (
	"context"
	"errors"
	"net/http"
)

// Errcodes of the Matrix specification the shim answers with.
const (
	CodeForbidden               = "M_FORBIDDEN"
	CodeNotFound                = "M_NOT_FOUND"
	CodeUnknown                 = "M_UNKNOWN"
	CodeUnrecognized            = "M_UNRECOGNIZED"
	CodeBadJSON                 = "M_BAD_JSON"
	CodeNotJSON                 = "M_NOT_JSON"
	CodeInvalidParam            = "M_INVALID_PARAM"
	CodeMissingParam            = "M_MISSING_PARAM"
	CodeUnauthorized            = "M_UNAUTHORIZED"
	CodeLimitExceeded           = "M_LIMIT_EXCEEDED"
	CodeTooLarge                = "M_TOO_LARGE"
	CodeIncompatibleRoomVersion = "M_INCOMPATIBLE_ROOM_VERSION"
)

// Error is a Matrix error answer: the HTTP status and the JSON body. errors.Is(err, target)
// holds for a target *Error with the same errcode and, unless the target's is 0, status.
type Error struct {
	Status  int    `json:"-"`
	ErrCode string `json:"errcode"`
	Message string `json:"error"`
	// RoomVersion is set on M_INCOMPATIBLE_ROOM_VERSION answers.
	RoomVersion string `json:"room_version,omitempty"`
	// RetryAfterMs is set on M_LIMIT_EXCEEDED answers.
	RetryAfterMs int64 `json:"retry_after_ms,omitempty"`
	// Allow is the Allow header of a 405 answer.
	Allow string `json:"-"`
}

func (e *Error) Error() string { return e.ErrCode + ": " + e.Message }

// Is reports whether target is an *Error of the same kind (errcode, and status when set).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.ErrCode == e.ErrCode && (t.Status == 0 || t.Status == e.Status)
}

// New is an answer with the given status, errcode and message, e.g. a client error passed on
// from Synapse.
func New(status int, errcode, msg string) *Error {
	return &Error{Status: status, ErrCode: errcode, Message: msg}
}

// Kinds to test answers against with errors.Is.
var (
	KindForbidden               = &Error{ErrCode: CodeForbidden}
	KindBadJSON                 = &Error{ErrCode: CodeBadJSON}
	KindIncompatibleRoomVersion = &Error{ErrCode: CodeIncompatibleRoomVersion}
)

// Forbidden is a 403 M_FORBIDDEN answer, e.g. a join the auth rules do not allow.
func Forbidden(msg string) *Error { return New(http.StatusForbidden, CodeForbidden, msg) }

// BadJSON is a 400 M_BAD_JSON answer for a request body that is not acceptable.
func BadJSON(msg string) *Error { return New(http.StatusBadRequest, CodeBadJSON, msg) }

// IncompatibleRoomVersion is the make_join answer for a room whose version the requester did
// not offer (or the shim cannot build joins for): 400 M_INCOMPATIBLE_ROOM_VERSION.
func IncompatibleRoomVersion(roomVersion string) *Error {
	return &Error{Status: http.StatusBadRequest, ErrCode: CodeIncompatibleRoomVersion,
		Message:     "Your homeserver does not support the features required to interact with this room",
		RoomVersion: roomVersion}
}

// Errors an event source returns; For turns each into its Matrix answer.
var (
	ErrNotFound            = errors.New("not found")                 // 404 M_NOT_FOUND
	ErrHostNotInRoom       = errors.New("host not in room")          // 403 M_FORBIDDEN
	ErrUpstreamUnavailable = errors.New("upstream is unavailable")   // 502 M_UNKNOWN
	ErrNotVerified         = errors.New("event failed verification") // 502 M_UNKNOWN: never served as intact
	// ErrIncomplete is an answer the cache holds only part of while Synapse cannot give the rest:
	// 502 M_UNKNOWN (504 when Synapse timed out), for the requester to retry, never a short 200.
	ErrIncomplete = errors.New("answer incomplete")
)

// MaxBackfill is the most events one /backfill answer holds, as in Synapse.
const MaxBackfill = 100

// For maps an event source's error to the answer the requester gets; internal details of
// upstream failures stay in the log.
func For(err error) *Error {
	var me *Error
	switch {
	case errors.As(err, &me):
		return me
	case errors.Is(err, ErrIncomplete) && errors.Is(err, context.DeadlineExceeded):
		return New(http.StatusGatewayTimeout, CodeUnknown, "Synapse did not answer in time and the cache holds only part of the answer; retry later")
	case errors.Is(err, ErrIncomplete):
		return New(http.StatusBadGateway, CodeUnknown, "Synapse is unavailable and the cache holds only part of the answer; retry later")
	case errors.Is(err, ErrNotFound):
		return New(http.StatusNotFound, CodeNotFound, "Event or room not found")
	case errors.Is(err, ErrHostNotInRoom):
		return New(http.StatusForbidden, CodeForbidden, "Host not in room.")
	case errors.Is(err, context.DeadlineExceeded):
		return New(http.StatusGatewayTimeout, CodeUnknown, "Synapse did not answer in time and the cache does not hold the answer")
	case errors.Is(err, ErrNotVerified):
		return New(http.StatusBadGateway, CodeUnknown, "The event failed verification and is not served")
	case errors.Is(err, ErrUpstreamUnavailable):
		return New(http.StatusBadGateway, CodeUnknown, "Synapse is unavailable and the cache does not hold the answer")
	default:
		return New(http.StatusInternalServerError, CodeUnknown, "Internal error")
	}
}
