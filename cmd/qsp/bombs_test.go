package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/qsp-dev/qsp/internal/externaltest"
)

// TestParallelDecompressionBombsRSS is the resource-exhaustion finding of
// issue 15 against the built binary: 20 parallel gzip bombs to /v1/metrics
// and 20 parallel snappy bombs to /api/v1/write (each at the 64 MiB
// decompressed ceiling) used to take RSS from 60–230 MB to 1–2.5 GB. With
// the shared ingest budget (receivers.budgetBytes, 128 MiB here) the peak
// RSS (VmHWM) stays under the RSS before + 2 × budget + 128 MiB: what the
// budget admits, as much again of garbage until the collector runs, and
// the bodies in flight. Every bomb is refused (413, or 429 with
// Retry-After while the budget is in use) and the server keeps serving.
// Under the race detector the bound's growth is tripled (its shadow
// memory); before the budget, 20 such bodies took 1.1–2.5 GB without it.
func TestParallelDecompressionBombsRSS(t *testing.T) {
	const (
		parallel = 20
		budget   = 128 << 20
		token    = "ingest-token-for-bombs"
	)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "specs"), 0o755)
	os.WriteFile(filepath.Join(dir, "specs", "shop.yaml"), []byte(killSpecs), 0o644)
	cfg := filepath.Join(dir, "qsp.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("receivers: {budgetBytes: %d}\nauth: {tokens: [{name: ing, role: ingest, sha256: %s}]}\n", budget, sha256Hex(token))), 0o644)
	addr := externaltest.FreeAddr(t)
	p := qsp(t, append(serveArgs(dir, addr), "--config", cfg)...)
	base := "http://" + addr
	externaltest.WaitHTTP(t, p, base+"/healthz", 60*time.Second)

	// 64 MiB + 1 of zeros in gzip (66 KB): refused at the decompressed
	// limit. 64 MiB of empty histogram fields in snappy (3 MB): refused at
	// the samples limit.
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(make([]byte, 64<<20+1))
	zw.Close()
	var series []byte
	for range 32 << 20 {
		series = append(series, 4<<3|2, 0) // field 4 (histograms), empty
	}
	wr := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), series)
	sn := snappy.Encode(nil, wr)
	wr, series = nil, nil

	pid := p.Cmd.Process.Pid
	rssBefore := procStatus(t, pid, "VmRSS")
	codes := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 60 * time.Second}
	for i := range 2 * parallel {
		wg.Go(func() {
			path, ct, enc, body := "/v1/metrics", "application/x-protobuf", "gzip", gz.Bytes()
			if i%2 == 1 {
				path, enc, body = "/api/v1/write", "snappy", sn
			}
			req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
			req.Header.Set("Content-Type", ct)
			req.Header.Set("Content-Encoding", enc)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			codes[resp.StatusCode]++
			switch resp.StatusCode {
			case http.StatusRequestEntityTooLarge:
			case http.StatusTooManyRequests:
				if resp.Header.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After: %s", b)
				}
			default:
				t.Errorf("%s: %d %s", path, resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	hwm := procStatus(t, pid, "VmHWM")
	bound := rssBefore + raceMemoryFactor*(2*budget+128<<20)
	msg := fmt.Sprintf("%d parallel bombs (%d-byte gzip, %d-byte snappy), budget %d MiB: answers %v; RSS before %d MiB, peak (VmHWM) %d MiB, bound %d MiB",
		2*parallel, gz.Len(), len(sn), budget>>20, codes, rssBefore>>20, hwm>>20, bound>>20)
	t.Log(msg)
	if os.Getenv("QSP_BOMB_REPORT") != "" {
		fmt.Println(msg)
	}
	if hwm > bound {
		t.Errorf("peak RSS %d bytes over the bound of %d", hwm, bound)
	}
	if exited, err := p.Exited(); exited {
		t.Fatalf("qsp exited: %v", err)
	}
	resp, err := http.Get(base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after the bombs: %v %v", resp, err)
	}
	resp.Body.Close()
}

// procStatus reads a memory field (kB) of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
