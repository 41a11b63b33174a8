#!/usr/bin/env bash
# make e2e-node: a real kubelet and containerd pull and start pods from
# us.icr.io through the plugin (docs/e2e-node.md). Checks the prerequisites
# (one line and exit 1 when one is missing), then runs the Go test in
# test/node with a state file that cleanup.sh reads if the test binary
# could not clean up itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! why=$("$here/prereqs.sh"); then
  echo "e2e-node: $why" >&2
  exit 1
fi
state=$(mktemp "${TMPDIR:-/tmp}/icr-e2e-node-state.XXXXXX")
trap '"$here/cleanup.sh" "$state"' EXIT
cd "$here/.."
ICR_E2E_NODE=1 ICR_E2E_NODE_STATE="$state" go test -count=1 -v -timeout "${E2E_NODE_TIMEOUT:-45m}" -run '^TestNode$' ./node
