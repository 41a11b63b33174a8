// Command image builds the icr-credential-provider container image without a
// container daemon, for several platforms at once, reproducibly.
//
// It cross-compiles every main package under cmd/ (CGO disabled, with the go
// build flags given after "--", which `make image` takes from the Makefile),
// puts the binaries, the LICENSE and a CA bundle into one layer per platform
// on an empty base (FROM scratch), and writes an OCI image index over the
// platforms as an OCI layout directory; optionally also as an OCI archive
// (a tar of that directory) and pushed to a registry.
//
// Every timestamp in the image is SOURCE_DATE_EPOCH and every file has a
// fixed mode and owner 0:0, so that the same sources, Go toolchain and flags
// give the same index digest, byte for byte.
//
// Usage (from hack/image; `make image` is the usual way in):
//
//	go run . --src ../.. --layout DIR [flags] -- -trimpath -ldflags '...'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// defaultPlatforms are the platforms the project releases for.
const defaultPlatforms = "linux/amd64,linux/arm64,linux/s390x,linux/ppc64le"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// options are the command line, checked.
type options struct {
	src        string // root of the source tree (the root module)
	goCmd      string // the go command that compiles
	binDir     string // binaries, one directory per platform (see platformDir)
	compile    bool   // (re)build the binaries into binDir first
	goFlags    []string
	layoutDir  string
	archive    string // OCI archive (tar of the layout); "" for none
	digestFile string // the index digest, one line; "" for none
	name       string // image reference: layout annotations, and where --push goes
	push       bool
	build      buildConfig
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: image [flags] [-- go build flags]")
		fs.PrintDefaults()
	}
	var o options
	var platforms, epoch string
	fs.StringVar(&o.src, "src", ".", "root of the source tree: its cmd/* main packages and LICENSE go into the image")
	fs.StringVar(&o.goCmd, "go", "go", "the go command to compile with")
	fs.StringVar(&o.binDir, "bin-dir", "", "directory for the compiled binaries, DIR/<os>_<arch>/<command> (default: a temporary directory)")
	fs.BoolVar(&o.compile, "compile", true, "compile the binaries into --bin-dir; false: use the ones already there")
	fs.StringVar(&platforms, "platforms", defaultPlatforms, "comma-separated os/arch list")
	fs.StringVar(&o.layoutDir, "layout", "", "write the image as an OCI layout directory here (required; an existing layout is replaced)")
	fs.StringVar(&o.archive, "oci-archive", "", "also write the layout as a tar file here (docker load, skopeo oci-archive:, ctr import)")
	fs.StringVar(&o.digestFile, "digest-file", "", "also write the index digest to this file")
	fs.StringVar(&o.name, "name", "", "image reference (registry/name:tag) recorded in the layout and used by --push")
	fs.BoolVar(&o.push, "push", false, "push the index to --name (credentials: the Docker config, as docker login writes it)")
	fs.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "every timestamp in the image, in seconds since 1970 (default $SOURCE_DATE_EPOCH)")
	fs.StringVar(&o.build.version, "version", "", "org.opencontainers.image.version label")
	fs.StringVar(&o.build.revision, "revision", "", "org.opencontainers.image.revision label (the commit)")
	fs.StringVar(&o.build.sourceURL, "source-url", "https://github.com/icr-credential-provider/icr-credential-provider", "org.opencontainers.image.source label")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.goFlags = fs.Args()

	if o.layoutDir == "" {
		return nil, errors.New("--layout is required")
	}
	if o.push && o.name == "" {
		return nil, errors.New("--push needs --name, the reference to push to")
	}
	if o.name != "" {
		if _, err := name.NewTag(o.name); err != nil {
			return nil, fmt.Errorf("--name: %w (want registry/name:tag)", err)
		}
	}
	if !o.compile && o.binDir == "" {
		return nil, errors.New("--compile=false needs --bin-dir, where the binaries are")
	}
	if epoch == "" {
		return nil, errors.New("set SOURCE_DATE_EPOCH or --source-date-epoch (make image uses the last commit's time)")
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || sec < 0 {
		return nil, fmt.Errorf("source date epoch %q: want a non-negative number of seconds", epoch)
	}
	o.build.created = time.Unix(sec, 0).UTC()
	for p := range strings.SplitSeq(platforms, ",") {
		pl, err := parsePlatform(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		o.build.platforms = append(o.build.platforms, pl)
	}
	o.build.license = filepath.Join(o.src, "LICENSE")
	return &o, nil
}

func parsePlatform(s string) (v1.Platform, error) {
	osName, arch, ok := strings.Cut(s, "/")
	if !ok || osName == "" || arch == "" || strings.Contains(arch, "/") {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch, e.g. linux/amd64 (variants are not supported)", s)
	}
	return v1.Platform{OS: osName, Architecture: arch}, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if o.binDir == "" {
		tmp, err := os.MkdirTemp("", "icr-image-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		o.binDir = tmp
	}
	o.build.binDir = o.binDir

	if o.compile {
		if err := compile(ctx, o.goCmd, o.src, o.binDir, o.build.platforms, o.goFlags, stderr); err != nil {
			return err
		}
	}
	idx, images, err := buildIndex(o.build)
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	if err := writeLayout(o.layoutDir, idx, o.name); err != nil {
		return err
	}
	for _, b := range images {
		if err := printImage(stdout, b); err != nil {
			return err
		}
	}
	if o.archive != "" {
		if err := writeArchive(o.archive, o.layoutDir, o.build.created); err != nil {
			return err
		}
	}
	if o.digestFile != "" {
		if err := os.WriteFile(o.digestFile, []byte(digest.String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "index %s  %s\n", digest, o.layoutDir)
	if o.push {
		ref, err := push(ctx, o.name, idx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s\n", ref)
	}
	return nil
}
