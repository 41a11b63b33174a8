# Static checks that `make test` runs before the tests.
#
#   make lint        gofmt, go vet, staticcheck, go mod tidy (root and test/)
#
# staticcheck is fetched from the Go module proxy at a pinned version into
# the build cache; without the proxy it is skipped, and the skip is said.

STATICCHECK_VERSION ?= v0.8.2
TOOLS_BIN           := $(shell $(GO) env GOCACHE)/icr-tools/staticcheck-$(STATICCHECK_VERSION)

.PHONY: lint staticcheck tidy-check

lint: fmt-check vet staticcheck tidy-check
	@$(TESTSUM) -suite lint -record $(RESULTS)/10-lint.json -note "clean: gofmt, go vet, $$(cat $(RESULTS)/.staticcheck), go mod tidy"

staticcheck:
	@mkdir -p $(RESULTS); \
	if [ ! -x $(TOOLS_BIN)/staticcheck ] && ! GOBIN=$(TOOLS_BIN) GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) >/dev/null 2>&1; then \
		echo "staticcheck: SKIPPED: honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) cannot be fetched from the Go module proxy"; \
		echo "staticcheck skipped (not fetchable)" > $(RESULTS)/.staticcheck; \
	else \
		echo "== staticcheck $(STATICCHECK_VERSION): ./... and test/ (the first run loads the Kubernetes packages of test/)"; \
		$(TOOLS_BIN)/staticcheck ./... && (cd test && $(TOOLS_BIN)/staticcheck ./...) && \
		echo "staticcheck $(STATICCHECK_VERSION)" > $(RESULTS)/.staticcheck; \
	fi

# go mod tidy must change nothing, in either module.
tidy-check:
	@$(GO) mod tidy -diff && (cd test && $(GO) mod tidy -diff) || { echo "go mod tidy is not a no-op: run 'go mod tidy' (and in test/)"; exit 1; }
