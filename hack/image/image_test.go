package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	testEpoch = 1700000000 // 2023-11-14T22:13:20Z
	// The binaries come from here when set (make image-check compiles them
	// once for all its builds); otherwise the test compiles its own.
	envBinDir = "ICR_IMAGE_BIN_DIR"
	// The version the binaries print, when envBinDir is set.
	envVersion  = "ICR_IMAGE_VERSION"
	testVersion = "v0.0.0-imagetest"
)

// testBinaries returns a --bin-dir with binaries for every default platform
// and the version they print.
func testBinaries(t *testing.T) (dir, version string) {
	t.Helper()
	if dir := os.Getenv(envBinDir); dir != "" {
		return dir, os.Getenv(envVersion)
	}
	if testing.Short() {
		t.Skip("compiles the binaries for four platforms; set " + envBinDir + " to reuse compiled ones")
	}
	dir = t.TempDir()
	o, err := parseOptions([]string{"--layout", "unused", "--source-date-epoch", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"-trimpath", "-buildvcs=false", "-ldflags", "-s -w -buildid= -X k8s.io/component-base/version.gitVersion=" + testVersion}
	var out bytes.Buffer
	if err := compile(t.Context(), "go", "../..", dir, o.build.platforms, flags, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	return dir, testVersion
}

// buildImage runs the command with the default platforms and returns the
// layout it wrote and what it printed.
func buildImage(t *testing.T, binDir string, extra ...string) (layoutDir, stdout string) {
	t.Helper()
	layoutDir = filepath.Join(t.TempDir(), "oci")
	args := append([]string{
		"--src", "../..", "--bin-dir", binDir, "--compile=false", "--layout", layoutDir,
		"--source-date-epoch", "1700000000", "--version", "v9.9.9", "--revision", "0123abc",
		"--name", "example.com/icr/icr-credential-provider:v9.9.9",
	}, extra...)
	var o, e bytes.Buffer
	if err := run(t.Context(), args, &o, &e); err != nil {
		t.Fatalf("image %s: %v\n%s", strings.Join(args, " "), err, e.String())
	}
	return layoutDir, o.String()
}

// layoutIndex is the one image index in the layout at dir.
func layoutIndex(t *testing.T, dir string) (v1.ImageIndex, v1.Descriptor) {
	t.Helper()
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].MediaType != types.OCIImageIndex {
		t.Fatalf("layout index.json: want one image index, got %+v", m.Manifests)
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx, m.Manifests[0]
}

func TestImage(t *testing.T) {
	binDir, version := testBinaries(t)
	dir, stdout := buildImage(t, binDir)
	idx, desc := layoutIndex(t, dir)

	digest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 5 || !strings.HasPrefix(lines[4], "index "+digest.String()) {
		t.Errorf("output: want one line per platform, then the index digest %s; got\n%s", digest, stdout)
	}
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != "v9.9.9" {
		t.Errorf("layout ref.name = %q, want the tag v9.9.9", got)
	}

	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, d := range m.Manifests {
		platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	if want := strings.Split(defaultPlatforms, ","); !slices.Equal(platforms, want) {
		t.Fatalf("index platforms %v, want %v", platforms, want)
	}
	if got := m.Annotations["org.opencontainers.image.revision"]; got != "0123abc" {
		t.Errorf("index revision annotation %q", got)
	}

	created := time.Unix(testEpoch, 0).UTC()
	for _, d := range m.Manifests {
		t.Run(d.Platform.Architecture, func(t *testing.T) {
			if d.MediaType != types.OCIManifestSchema1 {
				t.Errorf("manifest media type %s", d.MediaType)
			}
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != d.Platform.OS || cf.Architecture != d.Platform.Architecture {
				t.Errorf("config os/architecture %s/%s, index says %s/%s", cf.OS, cf.Architecture, d.Platform.OS, d.Platform.Architecture)
			}
			if !cf.Created.Equal(created) {
				t.Errorf("config created %v, want %v", cf.Created, created)
			}
			c := cf.Config
			if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/icr-credential-provider"}) || !slices.Equal(c.Cmd, []string{"version"}) || c.User != "0:0" {
				t.Errorf("config entrypoint %q cmd %q user %q", c.Entrypoint, c.Cmd, c.User)
			}
			for k, want := range map[string]string{
				"org.opencontainers.image.source":   "https://github.com/icr-credential-provider/icr-credential-provider",
				"org.opencontainers.image.revision": "0123abc",
				"org.opencontainers.image.version":  "v9.9.9",
				"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
				"org.opencontainers.image.licenses": "Apache-2.0",
			} {
				if c.Labels[k] != want {
					t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
				}
			}

			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("layers: %d, %v", len(layers), err)
			}
			if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
				t.Errorf("layer media type %s", mt)
			}
			files := layerFiles(t, layers[0], created)
			for p, mode := range map[string]int64{
				"usr/local/bin/icr-credential-provider": 0o755,
				"licenses/LICENSE":                      0o644,
				"etc/ssl/certs/ca-certificates.crt":     0o644,
				"etc/passwd":                            0o644,
			} {
				if h, ok := files[p]; !ok || h.Typeflag != tar.TypeReg || h.Mode != mode {
					t.Errorf("%s: in the layer %v, header %+v, want a file with mode %o", p, ok, h, mode)
				}
			}
			for _, name := range commands(t) {
				if h, ok := files["usr/local/bin/"+name]; !ok || h.Mode != 0o755 {
					t.Errorf("cmd/%s: not in the layer with mode 0755", name)
				}
			}
			if d.Platform.OS == runtime.GOOS && d.Platform.Architecture == runtime.GOARCH {
				runVersion(t, layers[0], version)
			}
		})
	}

	t.Run("reproducible", func(t *testing.T) {
		dir2, _ := buildImage(t, binDir)
		idx2, _ := layoutIndex(t, dir2)
		if d2, _ := idx2.Digest(); d2 != digest {
			t.Errorf("same binaries, second build: index %s, first %s", d2, digest)
		}
	})
}

// layerFiles are the layer's tar headers by name; every entry must be owned
// by 0:0 and have mtime created.
func layerFiles(t *testing.T, l v1.Layer, created time.Time) map[string]*tar.Header {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(created) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, created)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
	}
	return files
}

// commands are the main packages in the tree's cmd/: all go into the image.
func commands(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-C", "../..", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{end}}`, "./cmd/...").Output()
	if err != nil {
		t.Fatalf("go list ./cmd/...: %v", err)
	}
	var names []string
	for p := range strings.FieldsSeq(string(out)) {
		names = append(names, path.Base(p))
	}
	if !slices.Contains(names, mainBin) {
		t.Fatalf("go list ./cmd/... found %v, no %s", names, mainBin)
	}
	return names
}

// runVersion extracts the entrypoint from the layer and runs `version
// --short`, which must print version (any version when it is "").
func runVersion(t *testing.T, l v1.Layer, version string) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	bin := filepath.Join(t.TempDir(), mainBin)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no %s in the layer: %v", mainBin, err)
		}
		if h.Name != "usr/local/bin/"+mainBin {
			continue
		}
		f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		break
	}
	out, err := exec.Command(bin, "version", "--short").Output()
	if err != nil {
		t.Fatalf("%s version --short: %v", mainBin, err)
	}
	got := strings.TrimSpace(string(out))
	if got == "" || strings.ContainsAny(got, " \n") || (version != "" && got != version) {
		t.Errorf("%s version --short printed %q, want one word %q", mainBin, out, version)
	}
}

func TestLayerTar(t *testing.T) {
	mtime := time.Unix(testEpoch, 0)
	files := []file{
		{path: "/usr/local/bin/b", mode: 0o755, data: []byte("b")},
		{path: "/etc/x", mode: 0o644, data: []byte("x")},
		{path: "/usr/local/bin/a", mode: 0o755, data: []byte("a")},
	}
	one, err := layerTar(files, mtime)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(files)
	two, err := layerTar(files, mtime)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one, two) {
		t.Error("the same files in another order give another tar")
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(one))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if strings.HasSuffix(h.Name, "/") && (h.Typeflag != tar.TypeDir || h.Mode != 0o755) {
			t.Errorf("%s: type %c mode %o, want a directory 0755", h.Name, h.Typeflag, h.Mode)
		}
	}
	want := []string{"etc/", "etc/x", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/a", "usr/local/bin/b"}
	if !slices.Equal(names, want) {
		t.Errorf("entries %q, want %q", names, want)
	}
	if _, err := layerTar(append(files, files[0]), mtime); err == nil {
		t.Error("a path twice: no error")
	}
}

// TestArchiveAndPush uses stand-in binaries: what it checks does not depend
// on them.
func TestArchiveAndPush(t *testing.T) {
	binDir := t.TempDir()
	for _, p := range strings.Split(defaultPlatforms, ",") {
		dir := filepath.Join(binDir, strings.ReplaceAll(p, "/", "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, mainBin), []byte("#!/bin/sh\necho "+p+"\n"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ref := "localhost:" + u.Port() + "/icr/icr-credential-provider:test"

	archive := filepath.Join(t.TempDir(), "image.tar")
	dir, stdout := buildImage(t, binDir, "--oci-archive", archive, "--name", ref, "--push")
	idx, _ := layoutIndex(t, dir)
	digest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	wantRef := "localhost:" + u.Port() + "/icr/icr-credential-provider@" + digest.String()
	if !strings.Contains(stdout, "pushed "+wantRef+"\n") {
		t.Errorf("output does not say pushed %s:\n%s", wantRef, stdout)
	}
	d, err := name.NewDigest(wantRef)
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := remote.Index(d, remote.WithContext(context.Background()))
	if err != nil {
		t.Fatalf("pulling what was pushed: %v", err)
	}
	if got, _ := pushed.Digest(); got != digest {
		t.Errorf("registry has %s, layout %s", got, digest)
	}

	// The archive is the layout, file for file, and the same twice.
	a1, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(a1))
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			want, err := os.ReadFile(filepath.Join(dir, h.Name))
			if err != nil {
				t.Fatalf("archive has %s, layout not: %v", h.Name, err)
			}
			got, _ := io.ReadAll(tr)
			if !bytes.Equal(got, want) {
				t.Errorf("archive's %s differs from the layout's", h.Name)
			}
			n++
		}
	}
	if n < 2+4*3 { // oci-layout, index.json; per platform manifest, config, layer
		t.Errorf("archive has %d files", n)
	}
	archive2 := filepath.Join(t.TempDir(), "image.tar")
	buildImage(t, binDir, "--oci-archive", archive2, "--name", ref)
	if a2, err := os.ReadFile(archive2); err != nil || !bytes.Equal(a1, a2) {
		t.Errorf("second archive differs (%v)", err)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no layout", []string{"--source-date-epoch", "1"}, "--layout is required"},
		{"no epoch", []string{"--layout", "x", "--source-date-epoch", ""}, "SOURCE_DATE_EPOCH"},
		{"bad epoch", []string{"--layout", "x", "--source-date-epoch", "yesterday"}, "non-negative number"},
		{"push without name", []string{"--layout", "x", "--source-date-epoch", "1", "--push"}, "--push needs --name"},
		{"name by digest", []string{"--layout", "x", "--source-date-epoch", "1", "--name", "r.example/a@sha256:" + strings.Repeat("0", 64)}, "registry/name:tag"},
		{"no bin dir", []string{"--layout", "x", "--source-date-epoch", "1", "--compile=false"}, "--bin-dir"},
		{"variant", []string{"--layout", "x", "--source-date-epoch", "1", "--platforms", "linux/arm/v7"}, "os/arch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseOptions(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLayoutNotReplaced(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeLayout(dir); err == nil || !strings.Contains(err.Error(), "not replacing") {
		t.Errorf("a directory that is not a layout: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious")); err != nil {
		t.Error(err)
	}
}
