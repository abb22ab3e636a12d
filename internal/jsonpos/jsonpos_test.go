package jsonpos

import "testing"

func TestAt(t *testing.T) {
	data := []byte("{\n  \"a\": x\n}")
	for _, c := range []struct {
		off  int64
		want string
	}{
		{0, "line 1, column 1"},
		{1, "line 1, column 2"},
		{2, "line 2, column 1"},
		{9, "line 2, column 8"},
		{100, "line 3, column 2"},
	} {
		if got := At(data, c.off); got != c.want {
			t.Errorf("At(%d) = %q, want %q", c.off, got, c.want)
		}
	}
}
