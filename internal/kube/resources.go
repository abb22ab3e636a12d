package kube

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/qsp-dev/qsp/internal/kube/crd"
	"github.com/qsp-dev/qsp/internal/spec"
)

// Kind names in the configuration's kinds list: the qsp.dev kinds, and the
// other tools' resources QSP can read.
const (
	KindSloth = "Sloth" // sloth.slok.dev/v1 PrometheusServiceLevel
	KindPyrra = "Pyrra" // pyrra.dev/v1alpha1 ServiceLevelObjective
)

// DefaultKinds are watched when the configuration names none: QSP's own.
var DefaultKinds = []string{spec.KindService, spec.KindSLO, spec.KindPolicy, spec.KindGate, spec.KindPlaybook}

// AllKinds are the kinds the configuration may name.
var AllKinds = append(append([]string{}, DefaultKinds...), KindSloth, KindPyrra)

// DisplayNameAnnotation sets metadata.displayName of the qsp/v1 object.
// Kubernetes labels are not copied: their keys (app.kubernetes.io/name)
// are not the label names qsp/v1 accepts.
const DisplayNameAnnotation = "qsp.dev/display-name"

// resource is one watched kind.
type resource struct {
	name    string // configuration name: SLO, Sloth, ...
	gvr     schema.GroupVersionResource
	kind    string // the object's kind
	foreign bool   // another tool's resource: status only if configured
}

func resourceOf(name string) (resource, error) {
	switch name {
	case KindSloth:
		return resource{name: name, gvr: schema.GroupVersionResource{Group: "sloth.slok.dev", Version: "v1", Resource: "prometheusservicelevels"}, kind: "PrometheusServiceLevel", foreign: true}, nil
	case KindPyrra:
		return resource{name: name, gvr: schema.GroupVersionResource{Group: "pyrra.dev", Version: "v1alpha1", Resource: "servicelevelobjectives"}, kind: "ServiceLevelObjective", foreign: true}, nil
	}
	k, ok := crd.KindOf(name)
	if !ok {
		return resource{}, fmt.Errorf("unknown kind %q; want one of %s", name, strings.Join(AllKinds, ", "))
	}
	return resource{name: name, gvr: schema.GroupVersionResource{Group: crd.Group, Version: crd.Version, Resource: k.Plural}, kind: k.Kind}, nil
}

// sourceName names an object in diagnostics and in Origin.File:
// "slos.qsp.dev/team-a/checkout-availability".
func (r resource) sourceName(namespace, name string) string {
	return r.gvr.Resource + "." + r.gvr.Group + "/" + namespace + "/" + name
}

// document converts a resource into the spec document spec.LoadSources
// parses: a qsp.dev object becomes the qsp/v1 object of the same kind,
// name and spec; another tool's object is passed as it is (without the
// server's metadata), for the spec package's own import of it. Either way
// validation, and its messages, are those of a spec file.
func (r resource) document(u *unstructured.Unstructured) ([]byte, error) {
	meta := map[string]any{"name": u.GetName()}
	doc := map[string]any{"metadata": meta}
	if r.foreign {
		doc["apiVersion"] = u.GetAPIVersion()
		doc["kind"] = u.GetKind()
		meta["namespace"] = u.GetNamespace()
		if l := u.GetLabels(); len(l) > 0 {
			meta["labels"] = l
		}
		if a := u.GetAnnotations(); len(a) > 0 {
			ann := map[string]string{}
			for k, v := range a {
				// kubectl's copy of the whole object says nothing.
				if k != "kubectl.kubernetes.io/last-applied-configuration" {
					ann[k] = v
				}
			}
			if len(ann) > 0 {
				meta["annotations"] = ann
			}
		}
	} else {
		doc["apiVersion"] = spec.APIVersion
		doc["kind"] = r.kind
		if d := u.GetAnnotations()[DisplayNameAnnotation]; d != "" {
			meta["displayName"] = d
		}
	}
	if s, ok := u.Object["spec"]; ok {
		doc["spec"] = s
	}
	return yaml.Marshal(doc)
}
