package telemetry

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Environment variables that turn the test binary into a child receiver
// process (see runChildReceiver).
const (
	childDirEnv  = "QSP_TELEMETRY_CHILD_DIR"
	childAddrEnv = "QSP_TELEMETRY_CHILD_ADDR"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(runChildReceiver(dir, os.Getenv(childAddrEnv)))
	}
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of http.DefaultClient.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// runChildReceiver serves the remote_write receiver and the query API over
// an Embedded in dir until killed: what `qsp serve` will run, minus the
// wiring. The durability test SIGKILLs it.
func runChildReceiver(dir, addr string) int {
	e, err := OpenEmbedded(EmbeddedOptions{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	wh, err := NewWriteHandler(ReceiverOptions{Storage: e})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	qa, err := NewQueryAPI(QueryAPIOptions{Embedded: e})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", wh)
	mux.Handle("/prometheus/", qa)
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, mux))
	return 1
}
