//go:build !unix

package playbook

import "os/exec"

// setProcessGroup leaves the default: the context kills the process.
func setProcessGroup(*exec.Cmd) {}
