# syntax=docker/dockerfile:1
#
# The image the DaemonSet (examples/install) runs as its init container:
# `icr-credential-provider install` copies the binary out of the image onto
# the node. Build: make image [IMAGE=registry/name:tag]
#
# The binary is static (CGO_ENABLED=0): it runs on the node, outside the
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
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${VERSION} -X k8s.io/component-base/version.gitCommit=${COMMIT} -X k8s.io/component-base/version.buildDate=${DATE} -X k8s.io/component-base/version.gitTreeState=clean" \
      -o /out/icr-credential-provider ./cmd/icr-credential-provider

FROM gcr.io/distroless/static-debian12:latest
COPY --from=build /out/icr-credential-provider /usr/local/bin/icr-credential-provider
COPY LICENSE /licenses/LICENSE
USER 0:0
ENTRYPOINT ["/usr/local/bin/icr-credential-provider"]
CMD ["version"]
