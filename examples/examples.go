// Package examples embeds the example specs (a shop of three services with
// their SLOs, gates, playbooks and policies), so that qsp demo runs from
// any directory. The YAML files are the documentation's examples too.
package examples

import "embed"

// FS holds the example specs and the policy files they reference.
//
//go:embed *.yaml policies
var FS embed.FS
