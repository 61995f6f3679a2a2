package export

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"
)

// Format and FormatVersion identify an export directory's manifest.
const (
	Format        = "transition-matrix-export"
	FormatVersion = 1
	manifestName  = "manifest.json"
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

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// encodeJSON renders v compactly without HTML escaping, with a final newline.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// marshal renders the manifest indented (it is the file people read first), sorted lists.
func (m *Manifest) marshal() ([]byte, error) {
	sortSkipped(m.Skipped)
	sortSkipped(m.Failed)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortSkipped(s []Skipped) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Kind != s[j].Kind {
			return s[i].Kind < s[j].Kind
		}
		return s[i].ID < s[j].ID
	})
}

// readManifest loads OUT/manifest.json; ok is false when there is none.
func readManifest(fsys FS) (m *Manifest, ok bool, err error) {
	data, err := fsys.ReadFile(manifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", manifestName, err)
	}
	m = &Manifest{}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, false, fmt.Errorf("%s is not a valid manifest (%v): move it away or use a new directory", manifestName, err)
	}
	if m.Format != Format || m.FormatVersion != FormatVersion {
		return nil, false, fmt.Errorf("%s has format %q version %d; this shim writes %q version %d", manifestName, m.Format, m.FormatVersion, Format, FormatVersion)
	}
	if m.Files == nil {
		m.Files = map[string]FileEntry{}
	}
	return m, true, nil
}
