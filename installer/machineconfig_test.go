package installer

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestMachineConfig(t *testing.T) {
	out, err := MachineConfig("worker", "/etc/kubernetes/icr-credential-provider/config.yaml", "/var/lib/icr-credential-provider/bin")
	if err != nil {
		t.Fatal(err)
	}
	var mc struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Config struct {
				Ignition struct{ Version string } `json:"ignition"`
				Storage  struct {
					Files []struct {
						Path      string `json:"path"`
						Mode      int    `json:"mode"`
						Overwrite bool   `json:"overwrite"`
						Contents  struct {
							Source string `json:"source"`
						} `json:"contents"`
					} `json:"files"`
				} `json:"storage"`
			} `json:"config"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(out, &mc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if mc.APIVersion != "machineconfiguration.openshift.io/v1" || mc.Kind != "MachineConfig" || mc.Metadata.Name != "99-worker-icr-credential-provider" ||
		mc.Metadata.Labels["machineconfiguration.openshift.io/role"] != "worker" || mc.Spec.Config.Ignition.Version != "3.2.0" {
		t.Fatalf("%+v", mc)
	}
	files := mc.Spec.Config.Storage.Files
	if len(files) != 1 || files[0].Path != KubensWrapper || files[0].Mode != 0o755 || !files[0].Overwrite {
		t.Fatalf("files %+v", files)
	}
	b64, ok := strings.CutPrefix(files[0].Contents.Source, "data:text/plain;charset=utf-8;base64,")
	if !ok {
		t.Fatalf("source %q", files[0].Contents.Source)
	}
	script, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}

	// The script, run as kubelet.service runs it: the kubelet gets the two
	// flags after its own, anything else runs unchanged.
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "kubenswrapper")
	os.WriteFile(wrapper, script, 0o755)
	fakeKubelet := filepath.Join(dir, "kubelet")
	os.WriteFile(fakeKubelet, []byte("#!/bin/sh\nfor a; do echo \"$a\"; done\n"), 0o755)
	got, err := exec.Command(wrapper, fakeKubelet, "--config=/etc/kubernetes/kubelet.conf", "--v=2").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "--config=/etc/kubernetes/kubelet.conf\n--v=2\n--image-credential-provider-config=/etc/kubernetes/icr-credential-provider/config.yaml\n--image-credential-provider-bin-dir=/var/lib/icr-credential-provider/bin\n"
	if string(got) != want {
		t.Errorf("the kubelet got:\n%s", got)
	}
	other := filepath.Join(dir, "crio")
	os.WriteFile(other, []byte("#!/bin/sh\nfor a; do echo \"$a\"; done\n"), 0o755)
	if got, _ := exec.Command(wrapper, other, "--x").Output(); string(got) != "--x\n" {
		t.Errorf("another command got:\n%s", got)
	}

	for _, bad := range [][3]string{{"Worker", "/c.yaml", "/bin"}, {"worker", "c.yaml", "/bin"}, {"worker", "/c.yaml", "/my bin"}} {
		if _, err := MachineConfig(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
