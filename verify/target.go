package verify

import (
	"context"
	"encoding/json"

	"github.com/transition-matrix/transition-matrix/cutover"
)

// Target is what verify reads from the new server, through its client API as a local user.
// cutover.Client implements it; tests fake it.
type Target interface {
	// Check confirms the target answers and accepts the token.
	Check(ctx context.Context) error
	// Messages returns one page of a room's timeline, newest first, before from ("" = the end).
	Messages(ctx context.Context, roomID, asUser, from string, limit int) (*cutover.MessagesPage, error)
	// State returns a room's current state.
	State(ctx context.Context, roomID, asUser string) ([]cutover.StateEvent, error)
	// Profile returns a user's profile as the target answers it.
	Profile(ctx context.Context, userID string) (json.RawMessage, error)
	// Devices lists a user's devices, asked as that user.
	Devices(ctx context.Context, userID string) ([]cutover.Device, error)
	// AccountData returns one type of a user's global (roomID "") or room account data.
	AccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error)
	// QueryKeys returns the user's device and cross-signing keys, asked as that user.
	QueryKeys(ctx context.Context, userID string) (*cutover.Keys, error)
	// KeyBackup returns the current key backup version, or nil when there is none.
	KeyBackup(ctx context.Context, userID string) (*cutover.KeyBackupVersion, error)
}
