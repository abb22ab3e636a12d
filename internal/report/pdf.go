package report

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

// ErrNoChromium is returned by PDF when no Chromium is found on PATH.
var ErrNoChromium = errors.New("the pdf format needs Chromium on PATH (chromium, chromium-browser or google-chrome; Debian: apt-get install chromium); use --format html otherwise")

// chromiumNames are the executables PDF looks for, in order.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"}

// FindChromium returns the path of a Chromium on PATH, or ErrNoChromium.
func FindChromium() (string, error) {
	for _, n := range chromiumNames {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// maxPDFTime bounds one print: starting Chromium, loading the document
// (no network: it is self-contained) and printing it.
const maxPDFTime = 60 * time.Second

// PDF prints a self-contained HTML document to PDF with headless Chromium
// (chromium is the path of its executable; "" looks for one on PATH). The
// document is loaded from a private temporary file, so it needs no
// server; the browser runs with a fresh profile and is stopped before PDF
// returns.
func PDF(ctx context.Context, chromium string, html []byte) ([]byte, error) {
	if chromium == "" {
		p, err := FindChromium()
		if err != nil {
			return nil, err
		}
		chromium = p
	}
	dir, err := os.MkdirTemp("", "qsp-report-")
	if err != nil {
		return nil, fmt.Errorf("pdf: %w", err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, html, 0o600); err != nil {
		return nil, fmt.Errorf("pdf: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, maxPDFTime)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(file)}
	if err := chromedp.Do(bctx, chromedp.Navigate(u.String())); err != nil {
		return nil, fmt.Errorf("pdf: chromium %s: %w", chromium, err)
	}
	buf, err := chromedp.Run(bctx, chromedp.PrintToPDF(chromedp.PDFPaper(chromedp.PaperA4), chromedp.PDFMargin(0.5), chromedp.PDFPrintBackground()))
	if err != nil {
		return nil, fmt.Errorf("pdf: print: %w", err)
	}
	if !strings.HasPrefix(string(buf[:min(len(buf), 5)]), "%PDF-") {
		return nil, errors.New("pdf: chromium returned no PDF")
	}
	return buf, nil
}
