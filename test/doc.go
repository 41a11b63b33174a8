// Package test holds the tests that need more than the root module may
// depend on: the example manifests decoded strictly into their typed objects
// (apps/v1, kustomize), and an end-to-end test that runs the plugin through
// the kubelet's own credential-provider code
// (k8s.io/kubernetes/pkg/credentialprovider/plugin) against the local IBM
// Cloud emulator. It is a separate Go module so that the root module stays
// lean: run it with `make e2e` (cd test && go test ./...).
package test
