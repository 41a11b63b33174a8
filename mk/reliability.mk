# Reliability: fuzzing, the fault matrix and benchmarks.
# See docs/reliability.md and BENCHMARKS.md.
#
#   make fuzz                 each fuzz target for FUZZTIME (default 10s)
#   make fuzz FUZZTIME=5m     longer
#   make bench                figures for BENCHMARKS.md (BENCHFLAGS=-runs 1000 ...)
#
# `make test` runs fuzz-smoke (each target for FUZZ_SMOKE_TIME) so that the
# targets keep compiling and running; the seed corpora also run as ordinary
# tests in `make unit`, and hack/bench's TestBenchSmoke runs the benchmark
# with 3 runs. No timing is ever pass/fail.

FUZZTIME        ?= 10s
FUZZ_SMOKE_TIME ?= 3s
# package:FuzzTarget
FUZZ_TARGETS    := provider:FuzzRun provider:FuzzRegistryHost cache:FuzzDiskEntry iam:FuzzTokenResponse
BENCHFLAGS      ?=

.PHONY: fuzz fuzz-smoke bench bench-smoke

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$fn (./$$pkg) for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) ./$$pkg; \
	done

fuzz-smoke:
	@echo "== fuzz-smoke: each fuzz target for $(FUZZ_SMOKE_TIME)"
	@mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZ_SMOKE_TIME) >$(RESULTS)/fuzz.log 2>&1 || { cat $(RESULTS)/fuzz.log; exit 1; }
	@$(TESTSUM) -suite fuzz-smoke -record $(RESULTS)/40-fuzz.json -note "$(words $(FUZZ_TARGETS)) targets, $(FUZZ_SMOKE_TIME) each: no finding"

bench:
	$(GO) run ./hack/bench $(BENCHFLAGS)

bench-smoke:
	$(GO) run ./hack/bench -runs 3 -cold-runs 2 -concurrency 8 -inittrace-runs 1 -agent-runs 2 -agent-time 2s -agent-check-interval 200ms

TEST_TARGETS += fuzz-smoke
TEST_SUITES += fuzz-smoke
