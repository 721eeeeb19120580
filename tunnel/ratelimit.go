// SPDX-License-Identifier: MIT

package tunnel

import (
	"sync"
	"time"
)

// tokenBucket is a small token-bucket rate limiter. allow does not
// allocate. It is safe for concurrent use.
type tokenBucket struct {
	rate  float64 // tokens per second
	burst float64 // bucket size

	// mu guards the following fields.
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newTokenBucket(rate, burst float64) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, tokens: burst}
}

// allow reports whether an event at now may happen, taking a token if so.
func (b *tokenBucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
