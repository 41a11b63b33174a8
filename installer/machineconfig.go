package installer

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"sigs.k8s.io/yaml"
)

// KubensWrapper is the script OpenShift's kubelet.service starts the
// kubelet through, written by the 01-<pool>-kubelet MachineConfig.
const KubensWrapper = "/usr/local/bin/kubenswrapper"

// poolName matches a MachineConfigPool name (a DNS label). Compiled on
// first use: the {0,50} repeat costs every kubelet invocation ~0.8 ms.
var poolName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$`)
})

// MachineConfig renders an OpenShift MachineConfig for pool that adds the
// two kubelet flags (config and binDir as the host sees them). OpenShift's
// kubelet.service has no variable for extra flags (its ExecStart expands
// only ${…}, each as one word), and a drop-in replacing ExecStart would
// freeze one release's command line across upgrades. So it replaces the
// kubelet's wrapper with one that appends the flags; the Machine Config
// Operator merges it over its own (a later name wins) and takes it away
// with the MachineConfig. The DaemonSet installs the binary and config.
func MachineConfig(pool, config, binDir string) ([]byte, error) {
	if !poolName().MatchString(pool) {
		return nil, errorf("--machineconfig-pool %q is not a pool name (a DNS label such as worker or master)", pool)
	}
	if err := kubeletFlagPaths(config, binDir); err != nil {
		return nil, err
	}
	script := `#!/bin/sh
# Written by icr-credential-provider install --print-machineconfig: OpenShift's
# kubenswrapper, which kubelet.service starts the kubelet through, with the
# kubelet's image credential provider flags added.
case "$1" in
*/kubelet) set -- "$@" --` + FlagConfig + `=` + config + ` --` + FlagBinDir + `=` + binDir + ` ;;
esac
if [ -x /usr/bin/kubensenter ]; then
  exec /usr/bin/kubensenter "$@"
else
  exec "$@"
fi
`
	mc := map[string]any{
		"apiVersion": "machineconfiguration.openshift.io/v1",
		"kind":       "MachineConfig",
		"metadata": map[string]any{
			"name":   "99-" + pool + "-icr-credential-provider",
			"labels": map[string]string{"machineconfiguration.openshift.io/role": pool},
		},
		"spec": map[string]any{
			"config": map[string]any{
				"ignition": map[string]string{"version": "3.2.0"},
				"storage": map[string]any{
					"files": []any{map[string]any{
						"path":      KubensWrapper,
						"mode":      0o755,
						"overwrite": true,
						"contents":  map[string]string{"source": "data:text/plain;charset=utf-8;base64," + base64.StdEncoding.EncodeToString([]byte(script))},
					}},
				},
			},
		},
	}
	y, err := yaml.Marshal(mc)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by icr-credential-provider install --print-machineconfig: adds\n")
	fmt.Fprintf(&b, "#   --%s=%s\n#   --%s=%s\n", FlagConfig, config, FlagBinDir, binDir)
	fmt.Fprintf(&b, "# to the kubelet of MachineConfigPool %q by replacing %s\n", pool, KubensWrapper)
	b.WriteString("# (the wrapper kubelet.service starts the kubelet through) with this script:\n#\n")
	for line := range strings.SplitSeq(strings.TrimSuffix(script, "\n"), "\n") {
		b.WriteString(strings.TrimRight("#   "+line, " ") + "\n")
	}
	b.WriteString("#\n# The nodes of the pool drain and reboot one by one. Undo: oc delete machineconfig " + "99-" + pool + "-icr-credential-provider\n")
	b.Write(y)
	return []byte(b.String()), nil
}
