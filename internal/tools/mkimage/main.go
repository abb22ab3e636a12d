// Command mkimage builds QSP's OCI image from a static qsp binary,
// without a Docker daemon or a registry (see package image). `make image`
// runs it:
//
//	go run ./internal/tools/mkimage -binary bin/qsp-linux-amd64 -version v1.2.3 -out bin/qsp-image.oci.tar
//
// The creation time is SOURCE_DATE_EPOCH when set, else the commit time
// the Makefile passes, so the same commit builds the same image.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/qsp-dev/qsp/internal/image"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o image.Options
	var out, epoch string
	fs.StringVar(&o.Binary, "binary", "", "static qsp binary (CGO_ENABLED=0)")
	fs.StringVar(&out, "out", "bin/qsp-image.oci.tar", "OCI archive to write")
	fs.StringVar(&o.CACerts, "ca-certs", image.CACertPath, "CA bundle to copy into the image")
	fs.StringVar(&o.OS, "os", "linux", "the binary's GOOS")
	fs.StringVar(&o.Arch, "arch", runtime.GOARCH, "the binary's GOARCH")
	fs.StringVar(&o.Version, "version", "dev", "org.opencontainers.image.version")
	fs.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision (the commit)")
	fs.StringVar(&o.Source, "source", "https://github.com/qsp-dev/qsp", "org.opencontainers.image.source")
	fs.StringVar(&o.Licenses, "licenses", "NOASSERTION", "org.opencontainers.image.licenses (an SPDX expression)")
	fs.StringVar(&o.RefName, "tag", "", "org.opencontainers.image.ref.name in the layout; default the version")
	fs.StringVar(&epoch, "created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time in Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "mkimage: -created (SOURCE_DATE_EPOCH): %q is not Unix seconds\n", epoch)
			return 2
		}
		o.Created = time.Unix(sec, 0).UTC()
	} else {
		o.Created = time.Unix(0, 0).UTC()
	}
	if err := image.Build(o, out); err != nil {
		fmt.Fprintf(stderr, "mkimage: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "mkimage: wrote %s\n", out)
	return 0
}
