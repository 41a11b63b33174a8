package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// In the image.
const (
	binPath   = "/usr/local/bin"
	mainBin   = "icr-credential-provider" // the entrypoint; must be among the commands
	caPath    = "/etc/ssl/certs/ca-certificates.crt"
	licPath   = "/licenses/LICENSE"
	modeExec  = 0o755
	modeFile  = 0o644
	modeDir   = 0o755
	gzipLevel = gzip.DefaultCompression // BestCompression: 1 % smaller, 3 times slower
)

// etcFiles make uid/gid 0 (and nobody) resolvable, as in the distroless
// base image this replaces.
var etcFiles = map[string]string{
	"/etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
	"/etc/group":  "root:x:0:\nnobody:x:65534:\n",
}

// buildConfig is what goes into the index besides the binaries.
type buildConfig struct {
	binDir    string
	license   string // path of the LICENSE file
	platforms []v1.Platform
	created   time.Time // every timestamp: config, history, file mtimes
	version   string
	revision  string
	sourceURL string
}

// platformDir is where the binaries for p are: dir/<os>_<arch>.
func platformDir(dir string, p v1.Platform) string {
	return filepath.Join(dir, p.OS+"_"+p.Architecture)
}

// compile builds every main package under src/cmd for each platform into
// platformDir(binDir, p), emptied first: one goCmd build per platform, CGO
// disabled, with goFlags, which should make the build reproducible
// (-trimpath -buildvcs=false -ldflags '-buildid= ...'): the Makefile's.
func compile(ctx context.Context, goCmd, src, binDir string, platforms []v1.Platform, goFlags []string, stderr io.Writer) error {
	for _, p := range platforms {
		dir := platformDir(binDir, p)
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		args := append([]string{"build"}, goFlags...)
		// A directory as -o (trailing separator) takes every main package.
		args = append(args, "-o", dir+string(filepath.Separator), "./cmd/...")
		cmd := exec.CommandContext(ctx, goCmd, args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/... for %s/%s: %w", p.OS, p.Architecture, err)
		}
	}
	return nil
}

// built is one image of the index, for the summary.
type built struct {
	platform v1.Platform
	image    v1.Image
	commands []string // in /usr/local/bin
}

// buildIndex assembles one image per platform from the binaries in
// c.binDir and returns an OCI image index over them and the images, in
// c.platforms' order.
func buildIndex(c buildConfig) (v1.ImageIndex, []built, error) {
	common, err := commonFiles(c.license)
	if err != nil {
		return nil, nil, err
	}
	var adds []mutate.IndexAddendum
	var images []built
	for _, p := range c.platforms {
		bins, err := binaries(platformDir(c.binDir, p))
		if err != nil {
			return nil, nil, fmt.Errorf("%s/%s: %w", p.OS, p.Architecture, err)
		}
		img, err := platformImage(c, p, append(bins, common...))
		if err != nil {
			return nil, nil, fmt.Errorf("%s/%s: %w", p.OS, p.Architecture, err)
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Architecture}},
		})
		b := built{platform: p, image: img}
		for _, f := range bins {
			b.commands = append(b.commands, path.Base(f.path))
		}
		images = append(images, b)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	return mutate.Annotations(idx, labels(c)).(v1.ImageIndex), images, nil
}

// file is a regular file of the layer.
type file struct {
	path string // absolute, in the image
	mode int64
	data []byte
}

// binaries are the executables in dir, for /usr/local/bin.
func binaries(dir string) ([]file, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("binaries: %w", err)
	}
	var files []file
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files = append(files, file{path: path.Join(binPath, e.Name()), mode: modeExec, data: data})
	}
	if !slices.ContainsFunc(files, func(f file) bool { return path.Base(f.path) == mainBin }) {
		return nil, fmt.Errorf("no %s in %s", mainBin, dir)
	}
	return files, nil
}

// commonFiles are the same on every platform: the licence, the CA
// certificates (the node agent calls IAM over TLS; the base is empty) and
// /etc/passwd and /etc/group.
func commonFiles(license string) ([]file, error) {
	lic, err := os.ReadFile(license)
	if err != nil {
		return nil, err
	}
	files := []file{{path: licPath, mode: modeFile, data: lic}, {path: caPath, mode: modeFile, data: caBundle()}}
	for p, s := range etcFiles {
		files = append(files, file{path: p, mode: modeFile, data: []byte(s)})
	}
	return files, nil
}

// caBundle is the Mozilla NSS root store as golang.org/x/crypto/x509roots
// ships it, as PEM: pinned by go.mod, unlike the build machine's. Roots with
// constraints that PEM cannot carry (distrust after a date) are left out.
func caBundle() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return b.Bytes()
}

// platformImage is the image for p: its files in one layer, on nothing.
func platformImage(c buildConfig, p v1.Platform, files []file) (v1.Image, error) {
	tarData, err := layerTar(files, c.created)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzipLevel) // header: no name, no time
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tarData); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}

	created := v1.Time{Time: c.created}
	cfg := &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Created:      created,
		Config: v1.Config{
			Entrypoint: []string{path.Join(binPath, mainBin)},
			Cmd:        []string{"version"},
			User:       "0:0",
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			WorkingDir: "/",
			Labels:     labels(c),
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	var names []string
	for _, f := range files {
		names = append(names, f.path)
	}
	slices.Sort(names)
	return mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   created,
			CreatedBy: "hack/image: " + strings.Join(names, " "),
		},
	})
}

// labels are the OCI annotations, as config labels and on the index.
func labels(c buildConfig) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       mainBin,
		"org.opencontainers.image.description": "Kubelet image credential provider for IBM Cloud Container Registry: installs itself on the node",
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     c.created.Format(time.RFC3339),
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.source":   c.sourceURL,
		"org.opencontainers.image.revision": c.revision,
		"org.opencontainers.image.version":  c.version,
	} {
		if v != "" {
			l[k] = v
		}
	}
	return l
}

// layerTar is a tar of files and their parent directories, in path order,
// owned by 0:0, each with mtime and no other time, user or group name: the
// same files give the same bytes.
func layerTar(files []file, mtime time.Time) ([]byte, error) {
	byPath := map[string]file{}
	for _, f := range files {
		if _, dup := byPath[f.path]; dup {
			return nil, fmt.Errorf("%s twice in the layer", f.path)
		}
		byPath[f.path] = f
		for d := path.Dir(f.path); d != "/"; d = path.Dir(d) {
			byPath[d+"/"] = file{path: d + "/", mode: modeDir}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	slices.Sort(paths) // a directory ("a/") sorts before what it holds ("a/b")

	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, p := range paths {
		f := byPath[p]
		h := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    f.mode,
			ModTime: mtime,
			Format:  tar.FormatUSTAR,
		}
		if strings.HasSuffix(p, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
