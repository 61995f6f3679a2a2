package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelayDoublesToCap(t *testing.T) {
	p := Policy{Base: 500 * time.Millisecond, Max: 3 * time.Second}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}
	for i, w := range want {
		if got := p.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %s, want %s", i+1, got, w)
		}
	}
}

func TestDelayUncapped(t *testing.T) {
	p := Policy{Base: time.Millisecond}
	if got := p.Delay(11); got != 1024*time.Millisecond {
		t.Errorf("Delay(11) = %s, want 1.024s", got)
	}
}

func TestDelayJitter(t *testing.T) {
	var seen time.Duration
	p := Policy{Base: time.Second, Max: time.Minute, Jitter: func(d time.Duration) time.Duration { seen = d; return d / 4 }}
	if got := p.Delay(3); got != time.Second || seen != 4*time.Second {
		t.Errorf("Delay(3) = %s (jitter saw %s), want 1s (jitter saw 4s)", got, seen)
	}
}

func TestHalfJitterRange(t *testing.T) {
	for range 200 {
		if d := HalfJitter(time.Second); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("HalfJitter(1s) = %s", d)
		}
	}
	if d := HalfJitter(1); d != 1 {
		t.Errorf("HalfJitter(1) = %d", d)
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on a cancelled ctx = %v", err)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(0) on a cancelled ctx = %v", err)
	}
	if err := Sleep(t.Context(), 0); err != nil {
		t.Errorf("Sleep(0) = %v", err)
	}
	if err := Sleep(t.Context(), time.Millisecond); err != nil {
		t.Errorf("Sleep(1ms) = %v", err)
	}
}
