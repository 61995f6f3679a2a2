package synapseclient

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a Synapse release number such as 1.67.0 or 1.140.0rc1.
type Version struct {
	Major, Minor, Patch int
	Pre                 string // pre-release suffix, e.g. "rc1"; "" for a release
}

// Versions that gate endpoints.
var (
	// VersionAdminRoomMessages is the first Synapse with GET /_synapse/admin/v1/rooms/<id>/messages.
	VersionAdminRoomMessages = Version{Major: 1, Minor: 68}
	// VersionFetchEvent is the first Synapse with GET /_synapse/admin/v1/fetch_event/<event_id>.
	VersionFetchEvent = Version{Major: 1, Minor: 140}
)

// ParseVersion reads the version strings Synapse reports: "1.67.0", "v1.67.0", "1.140.0rc1",
// "1.99.0 (b=develop,abc123)", "1.2" (patch 0).
func ParseVersion(s string) (Version, error) {
	var v Version
	t := strings.TrimSpace(s)
	if i := strings.IndexAny(t, " \t("); i >= 0 {
		t = t[:i]
	}
	t = strings.TrimPrefix(strings.TrimPrefix(t, "v"), "V")
	parts := strings.SplitN(t, ".", 3)
	if len(parts) < 2 {
		return v, fmt.Errorf("synapseclient: version %q is not <major>.<minor>[.<patch>]", s)
	}
	nums := []*int{&v.Major, &v.Minor, &v.Patch}
	for i, p := range parts {
		digits := p
		if i == len(parts)-1 {
			end := 0
			for end < len(p) && p[end] >= '0' && p[end] <= '9' {
				end++
			}
			digits, v.Pre = p[:end], strings.TrimLeft(p[end:], "-.+")
		}
		n, err := strconv.Atoi(digits)
		if err != nil || n < 0 {
			return Version{}, fmt.Errorf("synapseclient: version %q has a bad number %q", s, p)
		}
		*nums[i] = n
	}
	return v, nil
}

// String renders the version as "1.67.0" or "1.140.0rc1".
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d%s", v.Major, v.Minor, v.Patch, v.Pre)
}

// AtLeast reports whether v is need or newer, comparing numbers only: a release candidate of a
// version counts as that version, since Synapse features land in the first rc.
func (v Version) AtLeast(need Version) bool {
	if v.Major != need.Major {
		return v.Major > need.Major
	}
	if v.Minor != need.Minor {
		return v.Minor > need.Minor
	}
	return v.Patch >= need.Patch
}

// IsZero reports whether v was never set.
func (v Version) IsZero() bool { return v == Version{} }
