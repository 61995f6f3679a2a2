package exportfmt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Format and FormatVersion identify an export directory's manifest.
const (
	Format        = "transition-matrix-export"
	FormatVersion = 1
	// ManifestName is the manifest's file name in the export directory.
	ManifestName = "manifest.json"
)

// Manifest is OUT/manifest.json: what was exported, from where, and the SHA-256 of every file.
// It is rewritten atomically as items complete, so after a kill it lists only files that are
// whole; Complete is true only once every item was written or skipped.
type Manifest struct {
	Format         string               `json:"format"`
	FormatVersion  int                  `json:"format_version"`
	ServerName     string               `json:"server_name"`
	SynapseVersion string               `json:"synapse_version"`
	SigningKeyID   string               `json:"signing_key_id"`
	PublicKeys     map[string]PublicKey `json:"public_keys"`
	EncryptedTo    *string              `json:"encrypted_to"`
	StartedAt      time.Time            `json:"started_at"`
	FinishedAt     *time.Time           `json:"finished_at"`
	Complete       bool                 `json:"complete"`
	Counts         Counts               `json:"counts"`
	Files          map[string]FileEntry `json:"files"`
	Skipped        []Skipped            `json:"skipped"`
	Failed         []Skipped            `json:"failed"`
}

// PublicKey is a key Synapse publishes at /_matrix/key/v2/server; ExpiredTS is set for old keys.
type PublicKey struct {
	Key       string `json:"key"`
	ExpiredTS *int64 `json:"expired_ts,omitempty"`
}

// Counts sums up the export.
type Counts struct {
	Users                    int `json:"users"`
	UsersDeactivated         int `json:"users_deactivated"`
	UsersAdmin               int `json:"users_admin"`
	UsersWithoutPassword     int `json:"users_without_password"`
	Rooms                    int `json:"rooms"`
	RoomsWithoutLocalMembers int `json:"rooms_without_local_members"`
	UserFiles                int `json:"user_files"`
	RoomFiles                int `json:"room_files"`
	Skipped                  int `json:"skipped"`
}

// FileEntry is one exported file: what it holds and the SHA-256 and size of its bytes on disk
// (for an encrypted export, of the .age file).
type FileEntry struct {
	Kind   string `json:"kind"` // "user" or "room"
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Skipped is an item that was not exported, and why.
type Skipped struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// SHA256Hex is the hex SHA-256 of b, as FileEntry.SHA256 records it.
func SHA256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Marshal renders the manifest indented (it is the file people read first), its lists sorted.
func (m *Manifest) Marshal() ([]byte, error) {
	SortSkipped(m.Skipped)
	SortSkipped(m.Failed)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// SortSkipped orders items by kind, then ID.
func SortSkipped(s []Skipped) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Kind != s[j].Kind {
			return s[i].Kind < s[j].Kind
		}
		return s[i].ID < s[j].ID
	})
}

// Errors of ParseManifest.
var (
	ErrNotManifest = errors.New("not a valid manifest")
	ErrOtherFormat = errors.New("not an export this shim reads")
)

// ParseManifest decodes manifest.json and checks its format and version; the error wraps
// ErrNotManifest or ErrOtherFormat.
func ParseManifest(data []byte) (*Manifest, error) {
	m := &Manifest{}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotManifest, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrOtherFormat, m.Format, Format)
	}
	if m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d; this shim reads version %d", ErrOtherFormat, m.FormatVersion, FormatVersion)
	}
	if m.Files == nil {
		m.Files = map[string]FileEntry{}
	}
	return m, nil
}

// Matches reports whether data is the file the entry records (size and SHA-256).
func (ent FileEntry) Matches(data []byte) bool {
	return int64(len(data)) == ent.Size && SHA256Hex(data) == ent.SHA256
}
