// Command qsp keeps services inside their Quality, Security and Performance
// objectives. See README.md.
package main

import (
	"os"

	"github.com/qsp-dev/qsp/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
