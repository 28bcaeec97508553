package fallback

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff computes retry delays: exponential from min, capped at max, with
// "equal jitter" (a uniform pick in [d/2, d]) so that nodes that failed
// together (a storage outage hits every exporter and importer at once) do
// not retry in lockstep, while the delay still grows.
type backoff struct {
	min, max time.Duration
}

// delay is the wait before retry number n (n >= 1).
func (b backoff) delay(n int) time.Duration {
	d := b.min
	for i := 1; i < n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// jitter spreads a periodic interval by up to +10%, so that followers polling
// the same lease do not arrive together.
func jitter(d time.Duration) time.Duration {
	if d < 10 {
		return d
	}
	return d + rand.N(d/10)
}

// sleep waits for d, ctx's end or a signal on any of the wake channels
// (nil channels never fire). It reports false when ctx ended.
func sleep(ctx context.Context, d time.Duration, wake ...<-chan struct{}) bool {
	if d < 0 {
		d = 0
	}
	t := time.NewTimer(d)
	defer t.Stop()
	var w0, w1, w2 <-chan struct{}
	switch len(wake) {
	case 3:
		w2 = wake[2]
		fallthrough
	case 2:
		w1 = wake[1]
		fallthrough
	case 1:
		w0 = wake[0]
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-w0:
	case <-w1:
	case <-w2:
	}
	return true
}
