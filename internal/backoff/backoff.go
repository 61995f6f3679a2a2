// Package backoff computes the delays between retries of a request (exponential, capped,
// jittered) and waits them out unless the context ends first.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy doubles Base on each retry up to Max; Jitter (nil: none) turns the computed delay into
// the one used.
type Policy struct {
	Base   time.Duration
	Max    time.Duration // 0: no cap
	Jitter func(time.Duration) time.Duration
}

// Delay is the wait before retry number retry (1 for the first retry).
func (p Policy) Delay(retry int) time.Duration {
	d := p.Base
	for i := 1; i < retry && (p.Max <= 0 || d < p.Max); i++ {
		d *= 2
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	if p.Jitter != nil {
		return p.Jitter(d)
	}
	return d
}

// HalfJitter picks a delay uniformly in [d/2, d].
func HalfJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Sleep waits d, returning ctx.Err() if ctx ends first (at once when d <= 0 and ctx is done).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
