# icr-credential-provider
#
#   make demo          run the plugin against the local IBM Cloud emulator
#   make run-emulator  the emulator, and the commands to run the plugin by hand
#   make test          lint; unit tests (race); the kubelet's plugin code
#                      (test/); fuzz smoke; image; real node (as root); and
#                      a summary: one line per suite, then N passed, N failed
#   make bench         start-up and cache benchmarks against a minimal Go binary

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

.PHONY: all build emulator demo run-emulator test test-suites unit vet fmt-check bench clean

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

# Each suite records its counts here (hack/testsum); make test sums them up.
# TEST_SUITES names the records make test expects (mk/*.mk add theirs).
RESULTS := _output/test-results
TESTSUM := $(GO) run ./hack/testsum
TEST_SUITES :=
comma := ,
space := $(subst ,, )

unit:
	@echo "== unit: go test -race ./... (root module)"
	@set -o pipefail; $(GO) test -race -count=1 -json ./... | $(TESTSUM) -suite unit -record $(RESULTS)/20-unit.json

include $(wildcard mk/*.mk)

# Every suite runs even when an earlier one failed (-k); the summary comes
# last, and the exit status says whether anything failed.
test:
	@rm -rf $(RESULTS); status=0; \
	$(MAKE) --no-print-directory -k test-suites || status=1; \
	$(TESTSUM) -summary $(RESULTS) -expect lint,unit,$(subst $(space),$(comma),$(strip $(TEST_SUITES))) || status=1; \
	exit $$status

test-suites: lint unit $(TEST_TARGETS)

clean:
	rm -rf $(BIN)
