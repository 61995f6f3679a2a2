package federation

import (
	"context"
	"errors"
	"net/http"
)

// Errors an EventSource returns; the handlers turn each into its Matrix error.
var (
	ErrNotFound            = errors.New("not found")                 // 404 M_NOT_FOUND
	ErrHostNotInRoom       = errors.New("host not in room")          // 403 M_FORBIDDEN
	ErrUpstreamUnavailable = errors.New("upstream is unavailable")   // 502 M_UNKNOWN
	ErrNotVerified         = errors.New("event failed verification") // 502 M_UNKNOWN: never served as intact
	// ErrIncomplete is an answer the cache holds only part of while Synapse cannot give the rest:
	// 502 M_UNKNOWN (504 when Synapse timed out), for the requester to retry, never a short 200.
	ErrIncomplete = errors.New("answer incomplete")
)

// matrixError is an error answer: an HTTP status and the Matrix error body.
type matrixError struct {
	Status  int    `json:"-"`
	ErrCode string `json:"errcode"`
	Message string `json:"error"`
	// RoomVersion is set on M_INCOMPATIBLE_ROOM_VERSION answers.
	RoomVersion string `json:"room_version,omitempty"`
	// RetryAfterMs is set on M_LIMIT_EXCEEDED answers.
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
	allow        string // the Allow header of a 405
}

func (e *matrixError) Error() string { return e.ErrCode + ": " + e.Message }

func errorf(status int, code, msg string) *matrixError {
	return &matrixError{Status: status, ErrCode: code, Message: msg}
}

// errBusy answers a request whose body could not get a turn to be read.
var errBusy = &matrixError{Status: http.StatusTooManyRequests, ErrCode: "M_LIMIT_EXCEEDED",
	Message: "Too many request bodies are being read at once; retry later", RetryAfterMs: 1000}

func badParam(msg string) *matrixError { return errorf(http.StatusBadRequest, "M_INVALID_PARAM", msg) }

func missingParam(msg string) *matrixError {
	return errorf(http.StatusBadRequest, "M_MISSING_PARAM", msg)
}

// toMatrixError maps an EventSource error to the answer the requester gets; internal details of
// upstream failures stay in the log.
func toMatrixError(err error) *matrixError {
	var me *matrixError
	switch {
	case errors.As(err, &me):
		return me
	case errors.Is(err, ErrIncomplete) && errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusGatewayTimeout, "M_UNKNOWN", "Synapse did not answer in time and the cache holds only part of the answer; retry later")
	case errors.Is(err, ErrIncomplete):
		return errorf(http.StatusBadGateway, "M_UNKNOWN", "Synapse is unavailable and the cache holds only part of the answer; retry later")
	case errors.Is(err, ErrNotFound):
		return errorf(http.StatusNotFound, "M_NOT_FOUND", "Event or room not found")
	case errors.Is(err, ErrHostNotInRoom):
		return errorf(http.StatusForbidden, "M_FORBIDDEN", "Host not in room.")
	case errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusGatewayTimeout, "M_UNKNOWN", "Synapse did not answer in time and the cache does not hold the answer")
	case errors.Is(err, ErrNotVerified):
		return errorf(http.StatusBadGateway, "M_UNKNOWN", "The event failed verification and is not served")
	case errors.Is(err, ErrUpstreamUnavailable):
		return errorf(http.StatusBadGateway, "M_UNKNOWN", "Synapse is unavailable and the cache does not hold the answer")
	default:
		return errorf(http.StatusInternalServerError, "M_UNKNOWN", "Internal error")
	}
}
