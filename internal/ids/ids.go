// Package ids makes the IDs of the records QSP keeps: policy decisions,
// gate evaluations and playbook runs.
package ids

import (
	"crypto/rand"
	"time"

	"github.com/google/uuid"
)

// New returns a UUIDv7 (RFC 9562) for t: 48 bits of Unix milliseconds,
// then random bits, so IDs sort by time in a store's index. t is the
// caller's clock, not time.Now, so records made under a test clock sort
// by that clock.
func New(t time.Time) string {
	var u uuid.UUID
	_, _ = rand.Read(u[6:]) // crypto/rand.Read never returns an error
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	u[6] = u[6]&0x0f | 0x70 // version 7
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return u.String()
}
