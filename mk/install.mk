# Installation: container image, release binaries, end-to-end test through
# the kubelet's own credential-provider code (separate Go module in test/).
#
#   make image     docker build (IMAGE=registry/name:tag)
#   make release   static binaries for linux/{amd64,arm64,s390x,ppc64le} + SHA256SUMS in _output/
#   make e2e       examples decode strictly; the kubelet's plugin manager against the emulator

IMAGE     ?= ghcr.io/icr-credential-provider/icr-credential-provider:$(VERSION)
PLATFORMS ?= linux/amd64 linux/arm64 linux/s390x linux/ppc64le
OUTPUT    ?= _output

.PHONY: image release e2e

image:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -t $(IMAGE) .

release:
	rm -rf $(OUTPUT) && mkdir -p $(OUTPUT)
	@set -e; for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; out=$(OUTPUT)/icr-credential-provider-$$os-$$arch; \
	  echo "  $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build $(GOFLAGS_BUILD) -o $$out ./cmd/icr-credential-provider; \
	done
	cd $(OUTPUT) && sha256sum icr-credential-provider-* > SHA256SUMS && cat SHA256SUMS

# test/ is its own module (it imports k8s.io/kubernetes), so the root
# `go vet ./...` and `go test ./...` do not reach it.
e2e:
	cd test && $(GO) vet ./... && $(GO) test -count=1 ./...

TEST_TARGETS += e2e
