package conduitsim

import "sync"

// Faults are the test hooks of a simulated Conduit; every method may be called while it serves.
type Faults struct {
	mu           sync.Mutex
	cut          map[string]int // room -> most events backfill may store
	failJoin     map[string]bool
	failMessages map[string]int // room -> failures left (-1: every request)
	onMessages   func(roomID string)
}

func newFaults() *Faults {
	return &Faults{cut: map[string]int{}, failJoin: map[string]bool{}, failMessages: map[string]int{}}
}

// CutHistory stops backfilling a room once n events came in by backfill: later backfills store
// nothing, as when no server can backfill, so the room's history stays cut short.
func (f *Faults) CutHistory(roomID string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut[roomID] = n
}

// FailJoin makes every join of a room fail as a join no server could assist with (until Clear).
func (f *Faults) FailJoin(roomID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failJoin[roomID] = true
}

// FailMessages makes the next times /messages requests of a room answer 500 (times < 0: all).
func (f *Faults) FailMessages(roomID string, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failMessages[roomID] = times
}

// OnMessages sets a function called after each /messages answer (nil removes it), e.g. to stop a
// client halfway.
func (f *Faults) OnMessages(fn func(roomID string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onMessages = fn
}

// Clear removes every fault and hook.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = map[string]int{}
	f.failJoin = map[string]bool{}
	f.failMessages = map[string]int{}
	f.onMessages = nil
}

func (f *Faults) cutAt(roomID string) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.cut[roomID]
	return n, ok
}

func (f *Faults) joinFails(roomID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failJoin[roomID]
}

func (f *Faults) messagesFail(roomID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.failMessages[roomID]
	switch {
	case !ok || n == 0:
		return false
	case n > 0:
		f.failMessages[roomID] = n - 1
	}
	return true
}

func (f *Faults) messagesHook() func(string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.onMessages
}
