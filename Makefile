# icr-credential-provider
#
#   make demo    run the plugin against the local IBM Cloud emulator
#   make test    vet, format check, unit tests (race), binary tests, e2e module
#   make bench   start-up and cache benchmarks against a minimal Go binary

SHELL   := /usr/bin/env bash
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# Reproducible builds (make release, make image): the same commit gives the
# same bytes. No clock: the build date is SOURCE_DATE_EPOCH, by default the
# last commit's time; no build ID, no paths, no VCS stamp (the version
# variables below say it). GIT_TREE_STATE is dirty when git status shows any
# change or untracked file.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
DATE    ?= $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r $(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)
GIT_TREE_STATE ?= $(shell if s=$$(git status --porcelain 2>/dev/null); then if [ -z "$$s" ]; then echo clean; else echo dirty; fi; fi)
# Once per make run: every target (and the binaries' ldflags) sees the same
# values even when the tree changes during the run.
VERSION := $(VERSION)
COMMIT  := $(COMMIT)
SOURCE_DATE_EPOCH := $(SOURCE_DATE_EPOCH)
DATE    := $(DATE)
GIT_TREE_STATE := $(GIT_TREE_STATE)
VPKG    := k8s.io/component-base/version
LDFLAGS := -s -w -buildid= -X $(VPKG).gitVersion=$(VERSION) -X $(VPKG).gitCommit=$(COMMIT) -X $(VPKG).buildDate=$(DATE) -X $(VPKG).gitTreeState=$(GIT_TREE_STATE)
GOFLAGS_BUILD := -trimpath -buildvcs=false -ldflags "$(LDFLAGS)"

.PHONY: all build emulator demo run-emulator test unit vet fmt-check bench clean

# Each area adds its own targets in mk/*.mk and appends to TEST_TARGETS the
# ones that `make test` must run.
TEST_TARGETS :=

all: build

# Static binary: the plugin runs on any node's libc (or none).
build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/icr-credential-provider ./cmd/icr-credential-provider

emulator:
	$(GO) build -o $(BIN)/icr-emulator ./hack/icr-emulator

demo: build emulator
	@hack/demo.sh

# The emulator in the foreground, with the commands to run the plugin by
# hand against it (README, "Run it by hand").
run-emulator: build emulator
	@hack/run-emulator.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 ./...

include $(wildcard mk/*.mk)

test: lint unit $(TEST_TARGETS)

clean:
	rm -rf $(BIN)
