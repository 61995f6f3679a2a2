package world

import "sort"

// StateKey identifies one entry of room state: an event type and a state key.
type StateKey struct {
	Type     string
	StateKey string
}

type stateEntry struct {
	key StateKey
	id  string
}

// maxDelta bounds how many changes a snapshot keeps on top of its shared base
// map before it is folded into a fresh map; lookups cost at most maxDelta steps.
const maxDelta = 24

// stateSnap is an immutable room state: a shared base map plus a short list of
// later changes. Snapshots share structure, so a room of n events with s state
// events stores O(s*maxDelta + s/maxDelta*|state|) entries, not O(n*|state|).
type stateSnap struct {
	base        *baseMap
	delta       []stateEntry
	size        int
	localJoined int
}

// baseMap is a shared, never-modified map of state entries.
type baseMap struct{ m map[StateKey]string }

var emptySnap = &stateSnap{base: &baseMap{m: map[StateKey]string{}}}

func (s *stateSnap) get(k StateKey) (string, bool) {
	for i := len(s.delta) - 1; i >= 0; i-- {
		if s.delta[i].key == k {
			return s.delta[i].id, true
		}
	}
	id, ok := s.base.m[k]
	return id, ok
}

// with returns a new snapshot with k set to id; joinedDelta adjusts the count
// of joined local users.
func (s *stateSnap) with(k StateKey, id string, joinedDelta int) *stateSnap {
	_, existed := s.get(k)
	size := s.size
	if !existed {
		size++
	}
	if len(s.delta) >= maxDelta {
		m := make(map[StateKey]string, size)
		for bk, bv := range s.base.m {
			m[bk] = bv
		}
		for _, e := range s.delta {
			m[e.key] = e.id
		}
		m[k] = id
		return &stateSnap{base: &baseMap{m: m}, size: size, localJoined: s.localJoined + joinedDelta}
	}
	d := make([]stateEntry, len(s.delta)+1)
	copy(d, s.delta)
	d[len(s.delta)] = stateEntry{k, id}
	return &stateSnap{base: s.base, delta: d, size: size, localJoined: s.localJoined + joinedDelta}
}

// State is a read-only view of a room's state at some point of its DAG.
// The zero value is an empty state.
type State struct{ s *stateSnap }

func (st State) snap() *stateSnap {
	if st.s == nil {
		return emptySnap
	}
	return st.s
}

// Get returns the event ID of the state entry (typ, stateKey), if any.
func (st State) Get(typ, stateKey string) (string, bool) {
	return st.snap().get(StateKey{typ, stateKey})
}

// Len is the number of state entries.
func (st State) Len() int { return st.snap().size }

// LocalJoined is the number of local users whose membership is "join".
func (st State) LocalJoined() int { return st.snap().localJoined }

// Map returns a fresh copy of the state as a map.
func (st State) Map() map[StateKey]string {
	s := st.snap()
	m := make(map[StateKey]string, s.size)
	for k, v := range s.base.m {
		m[k] = v
	}
	for _, e := range s.delta {
		m[e.key] = e.id
	}
	return m
}

// EventIDs returns the state's event IDs, sorted.
func (st State) EventIDs() []string {
	m := st.Map()
	ids := make([]string, 0, len(m))
	for _, id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// storedEntries counts map and delta entries held by the distinct snapshots
// in snaps; used to check that state storage stays linear.
func storedEntries(snaps []*stateSnap) int {
	bases := map[*baseMap]bool{}
	seen := map[*stateSnap]bool{}
	n := 0
	for _, s := range snaps {
		if s == nil || seen[s] {
			continue
		}
		seen[s] = true
		n += len(s.delta)
		if !bases[s.base] {
			bases[s.base] = true
			n += len(s.base.m)
		}
	}
	return n
}
