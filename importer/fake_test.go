package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// fakeTarget is a Target that keeps what it is given in memory and counts a change only when a
// value differs, like Conduit's writer.
type fakeTarget struct {
	mu       sync.Mutex
	dryRun   bool
	rows     map[string][]byte // "tree/key" → value
	users    map[string]*UserPlan
	counter  uint64
	failUser string // WriteUser of this user fails
	calls    int
	closed   bool
}

func newFakeTarget() *fakeTarget {
	return &fakeTarget{rows: map[string][]byte{}, users: map[string]*UserPlan{}}
}

func (f *fakeTarget) open(dryRun bool) (Target, error) {
	f.dryRun = dryRun
	f.closed = false
	return f, nil
}

func (f *fakeTarget) Describe() string { return "fake" }

func (f *fakeTarget) put(ch Changes, tree, key string, v []byte) {
	k := tree + "/" + key
	if old, ok := f.rows[k]; ok && bytes.Equal(old, v) {
		return
	}
	ch[tree]++
	if !f.dryRun {
		f.rows[k] = append([]byte(nil), v...)
	}
}

func (f *fakeTarget) WriteKeys(_ context.Context, k *KeysPlan) (Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	ch := Changes{}
	b, _ := json.Marshal(k)
	f.put(ch, "keys", "self", b)
	return ch, nil
}

func (f *fakeTarget) WriteUser(_ context.Context, u *UserPlan) (Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if u.UserID == f.failUser {
		return nil, errors.New("disk on fire")
	}
	ch := Changes{}
	b, _ := json.Marshal(u)
	f.put(ch, "user", u.UserID, b)
	if !f.dryRun {
		f.users[u.UserID] = u
	}
	return ch, nil
}

func (f *fakeTarget) WriteMedia(_ context.Context, m *MediaPlan) (Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	r, err := m.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	ch := Changes{}
	f.put(ch, "media", m.MediaID, data)
	return ch, nil
}

func (f *fakeTarget) RaiseCounters(_ context.Context, min uint64) (Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	ch := Changes{}
	if min > f.counter {
		ch["global"]++
		if !f.dryRun {
			f.counter = min
		}
	}
	return ch, nil
}

func (f *fakeTarget) Close() error { f.closed = true; return nil }

// fakeSessions is Synapse's database for synthetic users: every device has a token, two
// one-time keys and a fallback key.
type fakeSessions struct {
	devices map[string][]string // user → device IDs
}

func (s *fakeSessions) UserSessions(_ context.Context, uid string) (*Sessions, error) {
	out := &Sessions{Tokens: map[string]Token{}, OneTimeKeys: map[string]map[string]json.RawMessage{}, FallbackKeys: map[string]int{}}
	for i, d := range s.devices[uid] {
		out.Tokens[d] = Token{Token: synthToken(uid, i)}
		out.OneTimeKeys[d] = map[string]json.RawMessage{
			"signed_curve25519:AAAAAQ": raw(map[string]any{"key": "k1" + d}),
			"signed_curve25519:AAAAAg": raw(map[string]any{"key": "k2" + d}),
		}
		out.FallbackKeys[d] = 1
	}
	return out, nil
}

// fakeMedia is a media source over an in-memory list.
type fakeMedia struct {
	items []MediaItem
	files map[string][]byte
}

func (m *fakeMedia) LocalMedia(context.Context, []string) ([]MediaItem, error) { return m.items, nil }
func (m *fakeMedia) Open(_ context.Context, it MediaItem) (io.ReadCloser, error) {
	b, ok := m.files[it.MediaID]
	if !ok {
		return nil, fmt.Errorf("media store: %s: no such file", it.MediaID)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
