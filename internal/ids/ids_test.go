package ids

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestNew(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a, b := New(t0), New(t0.Add(time.Millisecond))
	if a == New(t0) {
		t.Errorf("two IDs for the same millisecond are equal: %s", a)
	}
	if !(a < b) {
		t.Errorf("IDs do not sort by time: %s then %s", a, b)
	}
	u, err := uuid.Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
		t.Errorf("%s: version %d variant %v, want 7 and RFC 4122/9562", a, u.Version(), u.Variant())
	}
	if sec, nsec := u.Time().UnixTime(); time.Unix(sec, nsec).UTC() != t0 {
		t.Errorf("%s: time %v, want %v", a, time.Unix(sec, nsec).UTC(), t0)
	}
}
