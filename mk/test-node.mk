# The real-node test (this file is named to sort after the others, so that
# `make test` runs it last): a kubelet built from k8s.io/kubernetes (the version
# test/go.mod pins) and Debian's containerd + runc pull and start pods from
# us.icr.io through the plugin, as root, on loopback only. See
# docs/e2e-node.md.
#
#   make e2e-node    run it; if a prerequisite is missing (root, containerd,
#                    runc, unshare, cgroups), fail with one line saying which
#                    and how to fix it
#
# `make test` runs it through e2e-node-if-possible: with the prerequisites
# missing, or ICR_E2E_NODE=0, it prints one "e2e-node skipped: <why>" line
# instead. .ci/run installs the prerequisites so that CI runs it.

E2E_NODE_TIMEOUT ?= 45m

.PHONY: e2e-node e2e-node-if-possible

e2e-node:
	@E2E_NODE_TIMEOUT=$(E2E_NODE_TIMEOUT) test/node/run.sh

e2e-node-if-possible:
	@if [ "$${ICR_E2E_NODE:-}" = 0 ]; then \
	  note="skipped: ICR_E2E_NODE=0"; \
	elif why=$$(test/node/prereqs.sh); then \
	  echo "== e2e-node: a real kubelet and containerd start pods from us.icr.io through the plugin (the first run builds the kubelet)"; \
	  E2E_NODE_TIMEOUT=$(E2E_NODE_TIMEOUT) test/node/run.sh && note="passed: a real kubelet and containerd pulled and started the pods"; \
	else \
	  note="skipped: $$why"; \
	fi; \
	[ -n "$${note:-}" ] || exit 1; \
	case "$$note" in skipped*) echo "e2e-node $$note";; esac; \
	$(TESTSUM) -suite e2e-node -record $(RESULTS)/90-e2e-node.json -note "$$note"

TEST_TARGETS += e2e-node-if-possible
TEST_SUITES += e2e-node
