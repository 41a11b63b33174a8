# syntax=docker/dockerfile:1
#
# Optional: `make image` builds the same image without a Docker daemon, for
# linux/amd64, arm64, s390x and ppc64le, reproducibly (hack/image; see
# docs/install.md). This Dockerfile is for docker users:
#   make docker-image [IMAGE=registry/name:tag]
#   docker buildx build --platform linux/amd64,linux/arm64,linux/s390x,linux/ppc64le -t IMAGE --push .
# It is not reproducible: its base image moves.
#
# The image the DaemonSet (examples/install) runs as its init container:
# `icr-credential-provider install` copies the binary out of the image onto
# the node. Every cmd/* binary is in /usr/local/bin.
#
# The binaries are static (CGO_ENABLED=0): they run on the node, outside the
# image, whatever the node's libc.
#
# The image's default user is root: the installer writes root-owned host
# directories (hostPath). The DaemonSet grants nothing else: no
# capabilities, no privilege escalation, a read-only root file system.

ARG GO_VERSION=1.26
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=v0.0.0-dev
ARG COMMIT=unknown
ARG DATE=1970-01-01T00:00:00Z
ARG GIT_TREE_STATE=
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The Makefile's GOFLAGS_BUILD: with the same Go release, the binaries of make release.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X k8s.io/component-base/version.gitVersion=${VERSION} -X k8s.io/component-base/version.gitCommit=${COMMIT} -X k8s.io/component-base/version.buildDate=${DATE} -X k8s.io/component-base/version.gitTreeState=${GIT_TREE_STATE}" \
      -o /out/ ./cmd/...

FROM gcr.io/distroless/static-debian12:latest
COPY --from=build /out/ /usr/local/bin/
COPY LICENSE /licenses/LICENSE
USER 0:0
ENTRYPOINT ["/usr/local/bin/icr-credential-provider"]
CMD ["version"]
