// Package roomversions says which Matrix room versions the migration targets (Conduit, tuwunel,
// continuwuity) can host; preflight, rejoin, warm, verify and the demo all ask it.
package roomversions

import "slices"

// Level is how well the targets host a room version.
type Level int

// Levels, worst first.
const (
	// Unknown is a version the targets do not list: they may not be able to host it.
	Unknown Level = iota
	// Unsupported is a version no target hosts (1 and 2): its rooms cannot move.
	Unsupported
	// Unstable is a version hosted only while allow_unstable_room_versions stays true (3 to 5).
	Unstable
	// Stable is a version hosted as stable (6 to 12).
	Stable
)

// Facts (research/conduit-facts.md §5): Conduit 0.10.12 and next, tuwunel and continuwuity list
// the same versions; Conduit's default room version is 12.
var (
	stable      = []string{"6", "7", "8", "9", "10", "11", "12"}
	unstable    = []string{"3", "4", "5"}
	unsupported = []string{"1", "2"}
)

// Effective is the version a room recorded with version has: "" is version 1 (Synapse records no
// version for rooms older than room versions).
func Effective(version string) string {
	if version == "" {
		return "1"
	}
	return version
}

// Of returns how the targets host version ("" is version 1, see Effective).
func Of(version string) Level {
	version = Effective(version)
	switch {
	case slices.Contains(stable, version):
		return Stable
	case slices.Contains(unstable, version):
		return Unstable
	case slices.Contains(unsupported, version):
		return Unsupported
	}
	return Unknown
}

// CanHost reports whether a room of version can be moved to the targets: every version but 1 and
// 2 (an unknown version is tried, and fails on the target if it cannot host it).
func CanHost(version string) bool { return Of(version) != Unsupported }

// Unhostable returns the versions no target hosts.
func Unhostable() []string { return slices.Clone(unsupported) }

// Hosted returns the versions the targets host, stable ones first, in the order Conduit's
// make_join offers them.
func Hosted() []string { return slices.Concat(stable, unstable) }
