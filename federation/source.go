package federation

import (
	"context"
	"encoding/json"
)

// PDU is an event as the shim serves it: the original JSON bytes, never re-encoded.
type PDU = json.RawMessage

// EventSource answers the shim's questions about events and rooms, from the verified cache and,
// when the cache lacks the answer, from Synapse. Errors are matrixspec's Err* values or answers.
type EventSource interface {
	// Event returns one verified event.
	Event(ctx context.Context, eventID string) (PDU, error)
	// Backfill returns the events reachable backwards from seeds (seeds included), newest first,
	// at most limit.
	Backfill(ctx context.Context, roomID string, seeds []string, limit int) ([]PDU, error)
	// MissingEvents walks prev_events back from latest (excluded) to earliest, oldest first.
	MissingEvents(ctx context.Context, roomID string, earliest, latest []string, limit int, minDepth int64) ([]PDU, error)
	// StateIDs returns the IDs of the room state before eventID and of its auth chain.
	StateIDs(ctx context.Context, roomID, eventID string) (state, authChain []string, err error)
	// State returns the room state before eventID and its auth chain.
	State(ctx context.Context, roomID, eventID string) (state, authChain []PDU, err error)
	// EventAuth returns the whole auth chain of eventID.
	EventAuth(ctx context.Context, roomID, eventID string) ([]PDU, error)
}
