GO ?= go
BIN := bin/kongfb
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/kongfb/kongfb/internal/buildinfo.Version=$(VERSION)

.PHONY: build test bench fuzz completions drill clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kongfb

test:
	scripts/test.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The control-plane outage drill on embedded defaults (README's quick start).
drill: build
	$(BIN) drill cp-outage

completions: build
	scripts/completions.sh

clean:
	rm -rf bin
