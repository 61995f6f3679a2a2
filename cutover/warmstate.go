package cutover

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/transition-matrix/transition-matrix/internal/atomicfile"
)

// WarmRoomState is one room's resume state.
type WarmRoomState struct {
	Member string `json:"member,omitempty"`
	From   string `json:"from,omitempty"` // the token the next page starts from ("" = the newest event)
	Events int    `json:"events"`
	Pages  int    `json:"pages"`
	Done   bool   `json:"done"`
}

// WarmStateFile is the resume state file's content (format 1).
type WarmStateFile struct {
	Format     int                       `json:"format"`
	ServerName string                    `json:"server_name"`
	Rooms      map[string]*WarmRoomState `json:"rooms"`
}

// WarmStore keeps warm's resume state, written atomically (0600) after every page.
type WarmStore struct {
	path string
	mu   sync.Mutex
	data WarmStateFile
}

// OpenWarmState reads the resume state at path (none yet is an empty state); a damaged file or
// one for another server is an error that says how to start over, and is never overwritten.
func OpenWarmState(path, serverName string) (*WarmStore, error) {
	s := &WarmStore{path: path, data: WarmStateFile{Format: 1, ServerName: serverName, Rooms: map[string]*WarmRoomState{}}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("warm state: %w", err)
	}
	var f WarmStateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("warm state %s is damaged (%v): remove it to start over", path, err)
	}
	if f.Format != 1 || f.ServerName != serverName {
		return nil, fmt.Errorf("warm state %s is for server %q (format %d), not %q: remove it or pass another -state", path, f.ServerName, f.Format, serverName)
	}
	if f.Rooms == nil {
		f.Rooms = map[string]*WarmRoomState{}
	}
	s.data = f
	return s, nil
}

// Get returns a room's state (the zero state for a room not warmed yet).
func (s *WarmStore) Get(roomID string) WarmRoomState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.data.Rooms[roomID]; st != nil {
		return *st
	}
	return WarmRoomState{}
}

// Put records a room's state and writes the file.
func (s *WarmStore) Put(roomID string, st WarmRoomState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data.Rooms[roomID] = &st
	b, err := json.MarshalIndent(s.data, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, b)
}
