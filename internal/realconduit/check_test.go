//go:build conduit

package realconduit

import (
	"strings"
	"testing"
)

// TestHistoryDiff: an event another user saw on Synapse is returned as shown (history visibility),
// one nobody saw and a missing one are differences.
func TestHistoryDiff(t *testing.T) {
	ev := func(id string) Event {
		return Event{EventID: id, Type: "m.room.message", Sender: "@a:hs", Content: []byte(`{}`)}
	}
	want := []Event{ev("$c"), ev("$a")}
	inRoom := map[string]bool{"$a": true, "$b": true, "$c": true}
	if diff, shown := historyDiff([]Event{ev("$c"), ev("$b"), ev("$a")}, want, inRoom); diff != "" || len(shown) != 1 || !strings.Contains(shown[0], "$b") {
		t.Errorf("hidden-by-visibility event: diff %q shown %v", diff, shown)
	}
	if diff, _ := historyDiff([]Event{ev("$c"), ev("$x"), ev("$a")}, want, inRoom); !strings.Contains(diff, "$x") {
		t.Errorf("unknown event: diff %q", diff)
	}
	if diff, _ := historyDiff([]Event{ev("$c")}, want, inRoom); !strings.Contains(diff, "missing") {
		t.Errorf("missing event: diff %q", diff)
	}
}
