package export

import (
	"fmt"
	"testing"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// TestScheduleSpreadsRoomsLargestFirst: every item stays, rooms come largest state first and
// spread among the users (never two rooms side by side while users remain), users in order.
func TestScheduleSpreadsRoomsLargestFirst(t *testing.T) {
	var items []item
	for i := range 9 {
		items = append(items, item{kind: exportfmt.KindUser, id: fmt.Sprintf("u%d", i)})
	}
	for i, n := range []int{5, 50, 20} {
		items = append(items, item{kind: exportfmt.KindRoom, id: fmt.Sprintf("r%d", i), room: synapseclient.RoomSummary{StateEvents: n}})
	}
	schedule(items)
	var got string
	for _, it := range items {
		got += it.id + " "
	}
	if want := "r1 u0 u1 u2 r2 u3 u4 u5 r0 u6 u7 u8 "; got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
}
