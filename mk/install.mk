# Installation: container image, release binaries, end-to-end test through
# the kubelet's own credential-provider code (separate Go module in test/).
#
#   make image          daemonless, reproducible OCI image for $(PLATFORMS)
#                       (hack/image): layout in _output/image/oci, digest in
#                       _output/image/digest. IMAGE=registry/name:tag names it,
#                       PUSH=1 pushes it there, OCI_ARCHIVE=FILE also writes a tar
#   make image-check    builds it three times, one digest; hack/image's tests
#   make docker-image   the same binaries with docker build and the Dockerfile (optional)
#   make release        static binaries of every cmd/* for $(PLATFORMS) + SHA256SUMS in _output/
#   make e2e            examples decode strictly; the kubelet's plugin manager against the emulator
#
# All three builds use GOFLAGS_BUILD (Makefile): the same commit gives the
# same binaries, SHA256SUMS and index digest.

IMAGE       ?= ghcr.io/icr-credential-provider/icr-credential-provider:$(VERSION)
PLATFORMS   ?= linux/amd64 linux/arm64 linux/s390x linux/ppc64le
OUTPUT      ?= _output
PUSH        ?=
OCI_ARCHIVE ?=

comma := ,
empty :=
space := $(empty) $(empty)
# hack/image is its own module (go-containerregistry stays out of go.mod);
# it runs there, hence absolute paths.
IMAGE_BUILD = $(GO) -C hack/image run . --go $(GO) --src $(CURDIR) \
	--platforms $(subst $(space),$(comma),$(strip $(PLATFORMS))) --name $(IMAGE) \
	--source-date-epoch $(SOURCE_DATE_EPOCH) --version $(VERSION) --revision $(COMMIT)
IMAGE_DIR   = $(abspath $(OUTPUT))/image

.PHONY: image image-check docker-image release e2e

image:
	@mkdir -p $(IMAGE_DIR)
	@$(IMAGE_BUILD) --bin-dir $(IMAGE_DIR)/bin --layout $(IMAGE_DIR)/oci --digest-file $(IMAGE_DIR)/digest \
	  $(if $(OCI_ARCHIVE),--oci-archive $(abspath $(OCI_ARCHIVE))) $(if $(filter 1 true yes,$(PUSH)),--push) \
	  -- $(GOFLAGS_BUILD)

# Reproducibility without a registry: built twice from the same binaries and
# once from binaries linked afresh (the build cache keeps that cheap), the
# index digest must be the same; then hack/image's own checks and tests
# (platforms, configs, files, owners, modes, mtimes, the binary runs) on the
# same binaries.
image-check:
	@echo "== image-check: the image built three times must have one digest (the first run compiles every cmd/ binary for 4 platforms)"
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	build() { out=$$1; shift; $(IMAGE_BUILD) --layout "$$tmp/$$out" --digest-file "$$tmp/$$out.digest" "$$@" -- $(GOFLAGS_BUILD) >/dev/null; }; \
	build a --bin-dir "$$tmp/bin"; \
	build b --bin-dir "$$tmp/bin" --compile=false; \
	build c --bin-dir "$$tmp/bin2"; \
	a=$$(cat "$$tmp/a.digest"); b=$$(cat "$$tmp/b.digest"); c=$$(cat "$$tmp/c.digest"); \
	echo "image-check: index $$a (first build)"; \
	echo "image-check: index $$b (same binaries)"; \
	echo "image-check: index $$c (binaries compiled again)"; \
	if [ "$$a" != "$$b" ] || [ "$$a" != "$$c" ]; then echo "image-check: FAIL: the image is not reproducible"; exit 1; fi; \
	(cd hack/image && $(GO) vet ./... && $(GO) mod tidy -diff && \
	ICR_IMAGE_BIN_DIR="$$tmp/bin" ICR_IMAGE_VERSION=$(VERSION) $(GO) test -count=1 ./...) && \
	$(TESTSUM) -suite image-check -record $(RESULTS)/50-image.json -note "reproducible: index $$a, $(words $(PLATFORMS)) platforms"

TEST_TARGETS += image-check
TEST_SUITES += image-check

# For docker users; make image needs no daemon and is reproducible, this is
# neither (its base image moves).
docker-image:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) \
	  --build-arg GIT_TREE_STATE=$(GIT_TREE_STATE) --build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) -t $(IMAGE) .

# Every main package under cmd/, as make image builds them (go build -o DIR/
# ./cmd/...), renamed NAME-OS-ARCH. Replaces the files directly in $(OUTPUT),
# not $(OUTPUT)/image.
release:
	@mkdir -p $(OUTPUT) && find $(OUTPUT) -maxdepth 1 -type f -delete
	@set -e; tmp=$$(mktemp -d $(OUTPUT)/.release.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build $(GOFLAGS_BUILD) -o "$$tmp/$$os-$$arch/" ./cmd/...; \
	  for f in "$$tmp/$$os-$$arch"/*; do \
	    out=$(OUTPUT)/$${f##*/}-$$os-$$arch; echo "  $$out"; mv "$$f" "$$out"; \
	  done; \
	done
	@cd $(OUTPUT) && find . -maxdepth 1 -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS && cat SHA256SUMS

# test/ is its own module (it imports k8s.io/kubernetes), so the root
# `go vet ./...` and `go test ./...` do not reach it.
e2e:
	@echo "== e2e: the kubelet's credential-provider code against the plugin (test/ module; the first run compiles the Kubernetes packages: several minutes)"
	@$(GO) -C test vet ./...
	@set -o pipefail; $(GO) -C test test -count=1 -json ./... | $(TESTSUM) -suite e2e -record $(RESULTS)/30-e2e.json

TEST_TARGETS += e2e
TEST_SUITES += e2e
