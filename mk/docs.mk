# Documentation: the output shown in README.md and docs/*.md is generated.
# Each block marked <!-- sample: NAME --> is what TestDocSamples
# (cmd/icr-credential-provider/docsamples_test.go) gets from running the
# real command against the emulator; make test fails when a block differs.
#
#   make docs    rewrite the marked blocks from fresh runs (review the diff)

.PHONY: docs

docs:
	UPDATE_DOCS=1 $(GO) test -count=1 -run '^TestDocSamples$$' ./cmd/icr-credential-provider
