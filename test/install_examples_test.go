package test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

// build runs kustomize (its own library, as kubectl apply -k does) on an
// examples/install directory and decodes every object strictly.
func build(t *testing.T, dir string) []runtime.Object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("..", "examples", "install", dir))
	if err != nil {
		t.Fatalf("kustomize build examples/install/%s: %v", dir, err)
	}
	y, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for i, d := range documents(y) {
		obj, _, err := strictDecoder.Decode(d, nil, nil)
		if err != nil {
			t.Fatalf("%s: document %d: %v", dir, i, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func find[T runtime.Object](objs []runtime.Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestInstallBase: the DaemonSet installs with an init container and runs
// the node agent, on every node, with the least it needs.
func TestInstallBase(t *testing.T) {
	objs := build(t, ".")
	ds := find[*appsv1.DaemonSet](objs)
	if len(ds) != 1 || ds[0].Namespace != "kube-system" {
		t.Fatalf("DaemonSets %v", ds)
	}
	spec := ds[0].Spec.Template.Spec
	if spec.PriorityClassName != "system-node-critical" || len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Errorf("priority %q, tolerations %+v", spec.PriorityClassName, spec.Tolerations)
	}
	if spec.HostNetwork || spec.HostPID || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("hostNetwork %v, hostPID %v, automount %v", spec.HostNetwork, spec.HostPID, spec.AutomountServiceAccountToken)
	}
	if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 || spec.Containers[0].Name != "agent" {
		t.Fatalf("%d init containers, containers %v", len(spec.InitContainers), spec.Containers)
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[res]; !ok {
				t.Errorf("%s: no %s request", c.Name, res)
			}
			if _, ok := c.Resources.Limits[res]; !ok {
				t.Errorf("%s: no %s limit", c.Name, res)
			}
		}
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged != nil && *sc.Privileged ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: securityContext %+v", c.Name, sc)
		}
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	// The installer's flags point into the hostPath mounts.
	ic := spec.InitContainers[0]
	if ic.Args[0] != "install" {
		t.Errorf("init container args %v", ic.Args)
	}
	mounts := map[string]string{}
	for _, m := range ic.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for flag, vol := range map[string]string{"--bin-dir=": "bin", "--config=": "config"} {
		i := slices.IndexFunc(ic.Args, func(a string) bool { return strings.HasPrefix(a, flag) })
		if i < 0 || mounts[vol] == "" || hostPaths[vol] == "" || !strings.HasPrefix(ic.Args[i][len(flag):], mounts[vol]) {
			t.Errorf("%s does not point into the %s hostPath mount (%v, %v)", flag, vol, mounts, hostPaths)
		}
	}
	// The agent: its node by the downward API, the host's paths at the
	// same paths (the plugin's settings name them), the API token for it
	// alone, the cache writable, the rest read-only.
	agent := spec.Containers[0]
	if agent.Command[0] != "/usr/local/bin/icr-node-agent" {
		t.Errorf("agent command %v", agent.Command)
	}
	nodeName := slices.IndexFunc(agent.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	})
	if nodeName < 0 {
		t.Error("the agent does not get its node's name from the downward API")
	}
	for _, m := range agent.VolumeMounts {
		if p, ok := hostPaths[m.Name]; ok && p != m.MountPath {
			t.Errorf("host path %s is mounted at %s in the agent", p, m.MountPath)
		}
		if (m.Name == "token-cache") == m.ReadOnly {
			t.Errorf("mount %s readOnly %v", m.Name, m.ReadOnly)
		}
	}
	if !slices.ContainsFunc(agent.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "api-token" }) ||
		slices.ContainsFunc(ic.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "api-token" }) {
		t.Error("the API token is not the agent's alone")
	}
	if !slices.Contains(agent.Args, "--metrics-address=127.0.0.1:9464") {
		t.Errorf("metrics are not loopback-only by default: %v", agent.Args)
	}
	// Least RBAC: patch nodes/status, create events in default.
	var rules []rbacv1.PolicyRule
	for _, r := range find[*rbacv1.ClusterRole](objs) {
		rules = append(rules, r.Rules...)
	}
	for _, r := range find[*rbacv1.Role](objs) {
		if r.Namespace != "default" {
			t.Errorf("role %s in %s", r.Name, r.Namespace)
		}
		rules = append(rules, r.Rules...)
	}
	var got []string
	for _, r := range rules {
		got = append(got, strings.Join(r.Resources, ",")+":"+strings.Join(r.Verbs, ","))
	}
	slices.Sort(got)
	if strings.Join(got, " ") != "events:create nodes/status:patch" {
		t.Errorf("RBAC rules %v, want exactly events:create and nodes/status:patch", got)
	}
	if sa := find[*corev1.ServiceAccount](objs); len(sa) != 1 || sa[0].AutomountServiceAccountToken == nil || *sa[0].AutomountServiceAccountToken {
		t.Errorf("service account %+v", sa)
	}
}

// TestInstallServiceAccountMode: the overlay adds tokenAttributes to what
// install writes, and lets kubelets request tokens for audience iam.
func TestInstallServiceAccountMode(t *testing.T) {
	objs := build(t, "service-account-mode")
	ds := find[*appsv1.DaemonSet](objs)[0]
	if !slices.Contains(ds.Spec.Template.Spec.InitContainers[0].Args, "--service-account-tokens") {
		t.Errorf("install args %v", ds.Spec.Template.Spec.InitContainers[0].Args)
	}
	var audience bool
	for _, r := range find[*rbacv1.ClusterRole](objs) {
		for _, rule := range r.Rules {
			if slices.Equal(rule.Resources, []string{provider.ServiceAccountAudience}) && slices.Equal(rule.Verbs, []string{"request-serviceaccounts-token-audience"}) {
				audience = true
			}
		}
	}
	if !audience {
		t.Error("no rule for the kubelets' token requests with audience iam")
	}
	for _, b := range find[*rbacv1.ClusterRoleBinding](objs) {
		if b.RoleRef.Name == "icr-credential-provider-token-audience" && b.Subjects[0].Name != "system:nodes" {
			t.Errorf("binding %+v", b)
		}
	}
}

// TestInstallConfigureKubelet: the hands-off overlay wires the kubelet from
// the init container alone (privileged there, with the host's / and its
// PID and network namespaces), one node at a time; the agent keeps the
// base's least privilege.
func TestInstallConfigureKubelet(t *testing.T) {
	objs := build(t, "configure-kubelet")
	ds := find[*appsv1.DaemonSet](objs)[0]
	spec := ds.Spec.Template.Spec
	if ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.IntValue() != 1 {
		t.Errorf("maxUnavailable %v, want 1", ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable)
	}
	if !spec.HostPID || !spec.HostNetwork {
		t.Errorf("hostPID %v hostNetwork %v", spec.HostPID, spec.HostNetwork)
	}
	ic := spec.InitContainers[0]
	for _, want := range []string{"--configure-kubelet=auto", "--host-root=/host", "--bin-dir=/host/opt/icr-credential-provider/bin", "--config=/host/etc/kubernetes/icr-credential-provider/config.yaml"} {
		if !slices.Contains(ic.Args, want) {
			t.Errorf("install args %v lack %s", ic.Args, want)
		}
	}
	if ic.SecurityContext.Privileged == nil || !*ic.SecurityContext.Privileged {
		t.Error("the installer cannot reach the host's systemd")
	}
	agent := spec.Containers[0].SecurityContext
	if agent.Privileged != nil && *agent.Privileged || agent.Capabilities == nil || len(agent.Capabilities.Add) > 0 {
		t.Errorf("the agent gained privileges: %+v", agent)
	}
	var hostRoot bool
	for _, v := range spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/" {
			hostRoot = true
		}
	}
	if !hostRoot || !slices.ContainsFunc(ic.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "host-root" && m.MountPath == "/host" }) {
		t.Error("the host's / is not mounted at /host")
	}
}

// TestInstallAPIKey: the key comes from a Secret mounted in the installer
// only, never as an environment variable or in an argument.
func TestInstallAPIKey(t *testing.T) {
	ds := find[*appsv1.DaemonSet](build(t, "api-key"))[0]
	spec := ds.Spec.Template.Spec
	ic := spec.InitContainers[0]
	if !slices.Contains(ic.Args, "--api-key-from=/secret/apikey") || !slices.Contains(ic.Args, "--host-root=/host") {
		t.Errorf("install args %v", ic.Args)
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				t.Errorf("%s: the key as an environment variable", c.Name)
			}
		}
		if c.Name != "install" && slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "apikey" }) {
			t.Errorf("%s mounts the API key Secret", c.Name)
		}
	}
}

// TestUninstall: the uninstaller undoes the wiring and the files on every
// node, one node at a time.
func TestUninstall(t *testing.T) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("..", "examples", "uninstall"))
	if err != nil {
		t.Fatal(err)
	}
	y, _ := res.AsYaml()
	obj, _, err := strictDecoder.Decode(y, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ds := obj.(*appsv1.DaemonSet)
	ic := ds.Spec.Template.Spec.InitContainers[0]
	if ic.Args[0] != "uninstall" || !slices.Contains(ic.Args, "--host-root=/host") || ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.IntValue() != 1 {
		t.Errorf("uninstall args %v, strategy %+v", ic.Args, ds.Spec.UpdateStrategy)
	}
	if c := ds.Spec.Template.Spec.Containers[0]; !slices.Contains(c.Command, "--idle") {
		t.Errorf("the placeholder container does not idle: %v", c.Command)
	}
}
