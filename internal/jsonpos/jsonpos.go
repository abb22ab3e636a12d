// Package jsonpos turns byte offsets of JSON decoding errors into the
// line and column a person looks for in the file.
package jsonpos

import "fmt"

// At returns "line L, column C" (both from 1) of byte offset off in data.
// An offset past the end is the end.
func At(data []byte, off int64) string {
	line, col := 1, 1
	for i := int64(0); i < off && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("line %d, column %d", line, col)
}
