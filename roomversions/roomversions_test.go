package roomversions

import (
	"slices"
	"testing"
)

func TestOf(t *testing.T) {
	for v, want := range map[string]Level{"": Unsupported, "1": Unsupported, "2": Unsupported, "3": Unstable, "5": Unstable,
		"6": Stable, "10": Stable, "11": Stable, "12": Stable, "13": Unknown, "org.matrix.msc1767.10": Unknown} {
		if got := Of(v); got != want {
			t.Errorf("Of(%q) = %v, want %v", v, got, want)
		}
		if CanHost(v) != (want != Unsupported) {
			t.Errorf("CanHost(%q) = %v", v, CanHost(v))
		}
	}
	if !slices.Equal(Unhostable(), []string{"1", "2"}) {
		t.Errorf("Unhostable() = %v", Unhostable())
	}
	if h := Hosted(); h[6] != "12" || len(h) != 10 || slices.Contains(h, "1") {
		t.Errorf("Hosted() = %v", h)
	}
}
