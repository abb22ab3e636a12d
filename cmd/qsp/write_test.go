package main

import (
	"crypto/sha256"
	"encoding/hex"

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

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
