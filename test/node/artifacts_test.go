package node

// What the test builds before it starts anything: the plugin, the
// emulator, the image program, the kubelet (cached by version), the image
// layers, the pause image archive and a CA with the registry's certificate.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

const (
	// rootModule and testModule are the module roots, relative to this
	// package's directory (where go test runs it).
	rootModule = "../.."
	testModule = ".."
	// pauseImage is the sandbox image, imported into containerd (it
	// cannot be pulled: no network).
	pauseImage = "localhost/icr-e2e-node/pause:1"
)

type binaries struct {
	plugin, emulator, hello, kubelet string
}

// goCmd runs go with args in dir; CGO off for static binaries.
func goCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}

func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// buildBinaries builds what the test runs into binDir, and the kubelet
// into its cache.
func buildBinaries(t *testing.T, ctx context.Context, binDir string) binaries {
	t.Helper()
	b := binaries{
		plugin:   filepath.Join(binDir, "icr-credential-provider"),
		emulator: filepath.Join(binDir, "icr-emulator"),
		hello:    filepath.Join(binDir, "hello"),
	}
	start := time.Now()
	for _, c := range []*exec.Cmd{
		goCmd(ctx, rootModule, "build", "-o", b.plugin, "./cmd/icr-credential-provider"),
		goCmd(ctx, rootModule, "build", "-o", b.emulator, "./hack/icr-emulator"),
		goCmd(ctx, testModule, "build", "-o", b.hello, "./node/hello"),
	} {
		if err := run(c); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("built the plugin, the emulator and the image program in %v", time.Since(start).Round(100*time.Millisecond))
	b.kubelet = kubeletBinary(t, ctx)
	return b
}

// kubeletBinary returns the kubelet at the version of k8s.io/kubernetes
// this module requires, built with the module's replace block and cached
// in $(go env GOCACHE)/icr-e2e-node/kubelet-VERSION (go clean -cache
// removes it). A cached binary that does not report that version is
// rebuilt.
func kubeletBinary(t *testing.T, ctx context.Context) string {
	t.Helper()
	out, err := goCmd(ctx, testModule, "list", "-m", "-f", "{{.Version}}", "k8s.io/kubernetes").Output()
	if err != nil {
		t.Fatalf("go list -m k8s.io/kubernetes: %v", err)
	}
	version := strings.TrimSpace(string(out))
	out, err = goCmd(ctx, testModule, "env", "GOCACHE").Output()
	cache := strings.TrimSpace(string(out))
	if err != nil || cache == "" || cache == "off" {
		t.Fatalf("e2e-node: no Go build cache to keep the kubelet in (go env GOCACHE: %q %v): unset GOCACHE=off", cache, err)
	}
	path := filepath.Join(cache, "icr-e2e-node", "kubelet-"+version)
	if out, err := exec.CommandContext(ctx, path, "--version").Output(); err == nil && strings.TrimSpace(string(out)) == "Kubernetes "+version {
		t.Logf("kubelet %s: cached at %s", version, path)
		return path
	}
	major, minor, ok := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	if !ok {
		t.Fatalf("k8s.io/kubernetes version %q", version)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	defer os.Remove(tmp)
	const v = "k8s.io/component-base/version"
	ldflags := fmt.Sprintf("-s -w -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean", v, version, v, major, v, minor, v)
	t.Logf("building kubelet %s from the module proxy (first run only; minutes on two cores) ...", version)
	start := time.Now()
	// No CGO_ENABLED=0 here: the kubelet is built as Kubernetes builds it
	// for a node (cgo as the toolchain defaults).
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "-ldflags", ldflags, "k8s.io/kubernetes/cmd/kubelet")
	cmd.Dir = testModule
	if err := run(cmd); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("built kubelet %s in %v: %s", version, time.Since(start).Round(time.Second), path)
	return path
}

// file is one entry of a layer.
type file struct {
	mode    int64
	content []byte
}

// layer is a gzip-compressed tar of files (name -> file; directories are
// added for every parent) and the digest of the uncompressed tar.
func layer(files map[string]file) (gz []byte, diffID string, err error) {
	names := make([]string, 0, len(files))
	dirs := map[string]bool{}
	for n := range files {
		names = append(names, n)
		for d := filepath.Dir(n); d != "." && d != "/"; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		names = append(names, d+"/")
	}
	sort.Strings(names)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o755, Typeflag: tar.TypeDir, Format: tar.FormatPAX}
		if f, ok := files[n]; ok {
			h = &tar.Header{Name: n, Mode: f.mode, Size: int64(len(f.content)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, "", err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(files[n].content); err != nil {
				return nil, "", err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(raw.Bytes())
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), digest(raw.Bytes()), nil
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// helloLayer is the layer of a us.icr.io image: the hello program and the
// image's name, which it prints.
func helloLayer(hello []byte, image string) ([]byte, error) {
	gz, _, err := layer(map[string]file{
		"hello":             {0o755, hello},
		"etc/icr-e2e-image": {0o644, []byte(image + "\n")},
	})
	return gz, err
}

// pauseArchive writes an OCI image layout archive of the pause image (the
// hello program as /pause), named pauseImage, for `ctr images import`.
func pauseArchive(path string, hello []byte) error {
	gz, diffID, err := layer(map[string]file{"pause": {0o755, hello}})
	if err != nil {
		return err
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/pause"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	desc := func(mediaType string, b []byte) map[string]any {
		return map[string]any{"mediaType": mediaType, "digest": digest(b), "size": len(b)}
	}
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc("application/vnd.oci.image.config.v1+json", cfg),
		"layers": []any{desc("application/vnd.oci.image.layer.v1.tar+gzip", gz)},
	})
	md := desc("application/vnd.oci.image.manifest.v1+json", manifest)
	md["annotations"] = map[string]string{"io.containerd.image.name": pauseImage, "org.opencontainers.image.ref.name": "1"}
	md["platform"] = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []any{md}})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", index)
	for _, b := range [][]byte{cfg, gz, manifest} {
		add("blobs/sha256/"+strings.TrimPrefix(digest(b), "sha256:"), b)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// writePKI makes a CA and a certificate for us.icr.io and 127.0.0.1 signed
// by it, valid for a day: dir/ca.pem, dir/tls.crt, dir/tls.key.
func writePKI(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "icr-e2e-node test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "us.icr.io"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"us.icr.io"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pemFile := func(name, typ string, b []byte, mode os.FileMode) error {
		return os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), mode)
	}
	if err := pemFile("ca.pem", "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	if err := pemFile("tls.crt", "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return pemFile("tls.key", "PRIVATE KEY", keyDER, 0o600)
}
