package synapseclient

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors; errors returned by this package wrap them where they apply.
var (
	// ErrNotFound: the server answered 404 (M_NOT_FOUND, or Synapse's bare `""` body of federation /event).
	ErrNotFound = errors.New("not found")
	// ErrHostNotInRoom: Synapse answered 403 "Host not in room." — no local user is joined to the room,
	// so its federation API refuses to talk about it, even to itself.
	ErrHostNotInRoom = errors.New("host not in room")
	// ErrForbidden: any other 403.
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthorized: 401 (bad token, or a federation signature Synapse refused).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrRateLimited: 429 M_LIMIT_EXCEEDED.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnsupported: the server is too old for the endpoint; no request was sent.
	ErrUnsupported = errors.New("unsupported by this server version")
	// ErrRetriesExhausted: the retry budget (attempts or total wait) was spent.
	ErrRetriesExhausted = errors.New("retry budget spent")
	// ErrResponseTooLarge: the response body exceeded Config.MaxResponseBytes.
	ErrResponseTooLarge = errors.New("response body too large")
	// ErrNotConfigured: the call needs a Config field that was left empty (AdminToken, Identity).
	ErrNotConfigured = errors.New("not configured")
	// ErrLoginAsSelf: login-as was asked for the admin itself; Synapse refuses that, use the admin token.
	ErrLoginAsSelf = errors.New("cannot log in as the admin itself; use the admin token for the admin's own data")
	// ErrUnrecognized: 404 M_UNRECOGNIZED, Synapse's answer for an endpoint it does not offer (such
	// as login-as on a deployment that hands logins to the Matrix Authentication Service).
	ErrUnrecognized = errors.New("endpoint not offered by this server")
)

// maxErrorBody caps the body kept in an *Error.
const maxErrorBody = 4096

// Error is a non-2xx answer from Synapse. Endpoint is the method and path template (no IDs, no
// secrets), Body the start of the response body (an error document, never a token).
type Error struct {
	Endpoint string // e.g. "GET /_matrix/federation/v1/backfill/{roomId}"
	Status   int
	ErrCode  string // Matrix errcode, "" when the body had none
	Message  string // Matrix "error" field
	Body     []byte
	// RetryAfter is the wait the server asked for (429), zero when it named none.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "synapseclient: %s: HTTP %d", e.Endpoint, e.Status)
	if e.ErrCode != "" {
		b.WriteString(" ")
		b.WriteString(e.ErrCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is matches the sentinel errors by status and errcode, so callers can write
// errors.Is(err, ErrHostNotInRoom) or errors.Is(err, ErrNotFound).
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == 404
	case ErrHostNotInRoom:
		return IsHostNotInRoom(e.Status, e.Message)
	case ErrForbidden:
		return e.Status == 403
	case ErrUnauthorized:
		return e.Status == 401
	case ErrRateLimited:
		return e.Status == 429
	case ErrLoginAsSelf:
		return e.Status == 400 && strings.Contains(strings.ToLower(e.Message), "login as self")
	case ErrUnrecognized:
		return e.Status == 404 && e.ErrCode == "M_UNRECOGNIZED"
	}
	return false
}

// IsHostNotInRoom reports whether a status and Matrix error message are Synapse's refusal to answer
// federation queries about a room none of its users is joined to.
func IsHostNotInRoom(status int, message string) bool {
	return status == 403 && strings.HasPrefix(strings.ToLower(strings.TrimSpace(message)), "host not in room")
}

// RetryError is returned once the retry budget is spent: it names the endpoint, the attempts made
// and the total time waited, and wraps ErrRetriesExhausted and the last attempt's error.
type RetryError struct {
	Endpoint string
	Attempts int
	Waited   time.Duration
	Reason   string // "max attempts reached" or "max total wait reached"
	Last     error
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("synapseclient: %s: gave up after %d attempts (%s, waited %s; retry budget spent): %v",
		e.Endpoint, e.Attempts, e.Reason, e.Waited, e.Last)
}

// Unwrap exposes both ErrRetriesExhausted and the last error (often an *Error).
func (e *RetryError) Unwrap() []error { return []error{ErrRetriesExhausted, e.Last} }

// UnsupportedError says which server version an endpoint needs; it wraps ErrUnsupported.
type UnsupportedError struct {
	Endpoint string
	Need     Version
	Have     Version
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("synapseclient: %s needs Synapse >= %s, server runs %s", e.Endpoint, e.Need, e.Have)
}

// Unwrap returns ErrUnsupported.
func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }
