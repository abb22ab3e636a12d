package main

import (
	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// encodeWrite builds a remote_write request with one sample of
// disk_probe.
func encodeWrite(ts int64, v float64) []byte {
	b, _ := proto.Marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "disk_probe"}},
		Samples: []prompb.Sample{{Timestamp: ts, Value: v}},
	}}})
	return snappy.Encode(nil, b)
}
