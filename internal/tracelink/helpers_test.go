package tracelink

import (
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/storage"
)

func storageOpts(ex exemplar.Exemplar) storage.AOptions {
	return storage.AOptions{Exemplars: []exemplar.Exemplar{ex}}
}
