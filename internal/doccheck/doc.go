// Package doccheck holds the test that runs every shell command of the
// README and the getting-started guide exactly as written, so the
// documentation stays runnable. It has no code of its own.
package doccheck
