# The developer entry points. `make test` is what CI runs (.ci/run).
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK ?= golang.org/x/vuln/cmd/govulncheck@v1.9.0
# Every FuzzXxx in the module is found by scripts/fuzz.sh; `make test`
# runs each briefly, `make fuzz` for FUZZTIME each.
FUZZTIME_SHORT ?= 5s
FUZZTIME ?= 2m
TEST_TIMEOUT ?= 40m
# The image's version labels and reproducible time come from Git.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
LDFLAGS    := -s -w -X github.com/qsp-dev/qsp/internal/cli.version=$(VERSION)

.PHONY: all build image manifests test deps check unit fuzz-short fuzz bench lint vulncheck soak clean crds

all: build

build:
	$(GO) build -o bin/qsp ./cmd/qsp

## image: the OCI image as an archive (bin/qsp-image.oci.tar), without a
## Docker daemon or a registry; load it with skopeo, podman or crane
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/qsp-linux-$(IMAGE_ARCH) ./cmd/qsp
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./internal/tools/mkimage -binary bin/qsp-linux-$(IMAGE_ARCH) -arch $(IMAGE_ARCH) -version $(VERSION) -revision "$(REVISION)" -out bin/qsp-image.oci.tar

## manifests: re-render deploy/kubernetes/ from the Helm chart (a test
## checks they match)
manifests:
	@GO=$(GO) ./scripts/manifests.sh

## deps: install the real components integration tests use (Debian packages)
deps:
	@./scripts/install-deps.sh

## crds: regenerate deploy/helm/qsp/crds from the qsp/v1 spec types
## (internal/kube/crd's golden test fails when they are stale)
crds:
	$(GO) run ./internal/kube/crd/gen -out deploy/helm/qsp/crds

## test: check, the whole suite with the race detector, then a short run of every fuzzer
test: deps check unit fuzz-short

unit:
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

fuzz-short:
	@GO=$(GO) ./scripts/fuzz.sh $(FUZZTIME_SHORT)

fuzz:
	@GO=$(GO) ./scripts/fuzz.sh $(FUZZTIME)

## bench: every Go benchmark; figures go into docs/BENCHMARKS.md
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -timeout 60m ./...

## lint: check, then govulncheck against vuln.go.dev
lint: check vulncheck

## check: formatting, vet and staticcheck (offline; part of test)
check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## vulncheck: known vulnerabilities in the build; needs vuln.go.dev, so
## test leaves it out (CI machines here reach only the module proxy)
vulncheck:
	$(GO) run $(GOVULNCHECK) ./...

## soak: a bounded load test (SOAK_DURATION, default 10m); not part of test
soak:
	$(GO) test -run='^TestSoak$$' -timeout 2h -v ./internal/soak -soak.duration=$${SOAK_DURATION:-10m} -soak.report=$${SOAK_REPORT:-$(CURDIR)/docs/benchmarks/soak.md}

clean:
	rm -rf bin
