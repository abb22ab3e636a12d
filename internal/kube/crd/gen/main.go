// Command gen writes QSP's CustomResourceDefinitions, generated from the
// qsp/v1 spec types, to deploy/helm/qsp/crds. Run it from the module root
// (make crds); the golden test in internal/kube/crd fails when its output
// is stale.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/qsp-dev/qsp/internal/kube/crd"
)

func main() {
	out := flag.String("out", "deploy/helm/qsp/crds", "directory to write the CRDs to")
	flag.Parse()
	files, err := crd.Manifests("internal/spec", "internal/kube/crd")
	if err == nil {
		err = os.MkdirAll(*out, 0o755)
	}
	for name, b := range files {
		if err != nil {
			break
		}
		err = os.WriteFile(filepath.Join(*out, name), b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crd gen:", err)
		os.Exit(1)
	}
}
