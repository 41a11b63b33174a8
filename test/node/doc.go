// Package node holds the real-node test, `make e2e-node`: a kubelet built
// from k8s.io/kubernetes at the version this module pins, and Debian's
// containerd and runc, start static pods whose images live on us.icr.io —
// the emulator's registry over TLS in a private network and mount
// namespace — with credentials from the plugin alone (no pull secret).
// See docs/e2e-node.md.
//
// The test runs only with ICR_E2E_NODE=1 (run.sh, which `make e2e-node`
// calls, sets it after checking the prerequisites with prereqs.sh);
// otherwise it skips and says why, so `make e2e` does not run it.
package node
