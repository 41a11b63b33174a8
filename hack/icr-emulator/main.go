// Command icr-emulator runs the iamtest IBM Cloud emulator (IAM token
// service, VPC instance metadata / identity service and a minimal ICR
// registry on one loopback base URL) until SIGINT or SIGTERM. It is what
// `make demo` and shell-level tests run the plugin against.
//
// When ready it prints one line on stdout,
//
//	ICR_EMULATOR_URL=http://127.0.0.1:PORT
//
// and, with --url-file, writes the same line atomically to that file.
// With --tls-cert and --tls-key it also serves over TLS (--tls-listen) and
// prints (and writes) a second line, ICR_EMULATOR_TLS_URL=https://HOST:PORT.
//
// The registry serves a config-only manifest for each --image, and a
// runnable image for each repository:tag given --image-layer (gzip tar
// archives, in order) and optionally --image-entrypoint: what a container
// runtime can pull and start (make e2e-node).
// Faults can be set at start (--fault metadata-token=hang) and flipped at
// run time over HTTP:
//
//	curl -X POST "$URL/_emulator/fault?endpoint=iam-token&kind=503&times=2"
//	curl -X POST "$URL/_emulator/fault?endpoint=metadata-token&kind=none"
//	curl "$URL/_emulator/stats"
//	curl -X POST "$URL/_emulator/reset"
//	curl -X POST "$URL/_emulator/clock?skew=10m"
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "icr-emulator:", err)
		os.Exit(2)
	}
}

// run starts the emulator as the flags in args say, reports its URL on
// stdout and serves until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("icr-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "`address` to listen on; must be a loopback address")
	lifetime := fs.Duration("token-lifetime", iamtest.DefaultTokenLifetime, "lifetime of the IAM access tokens issued")
	skew := fs.Duration("clock-skew", 0, "run the emulator's clock this far ahead (negative: behind)")
	audience := fs.String("audience", iamtest.DefaultAudience, "audience required in service-account tokens (cr-token grant)")
	apiKeyFile := fs.String("api-key-file", "", "`file` holding an extra API key to accept, for the default service ID (iamtest.DefaultAPIKey is always accepted)")
	urlFile := fs.String("url-file", "", "also write the ICR_EMULATOR_URL line to this `file` (atomically)")
	logRequests := fs.Bool("log-requests", false, "log one line per request (no secrets) to stderr")
	strict := fs.Bool("strict-metadata-versions", false, "answer 404 on /identity/v1 paths for version dates before 2025-08-26")
	tlsListen := fs.String("tls-listen", "127.0.0.1:0", "`address` of the TLS listener (with --tls-cert and --tls-key); must be a loopback address")
	tlsCert := fs.String("tls-cert", "", "PEM certificate `file` (chain) for the TLS listener")
	tlsKey := fs.String("tls-key", "", "PEM private key `file` for the TLS listener")
	saTokenFile := fs.String("sa-token-file", "", "write a service-account token (audience --audience, valid 24h) for --sa-token-for to this `file` (0600), for requests typed by hand")
	saTokenFor := fs.String("sa-token-for", SampleServiceAccount, "`namespace/name` of the service account --sa-token-file is minted for")
	var opts []iamtest.Option
	runnable := newRunnableImages()
	fs.Func("image-layer", "`repository:tag=file` a gzip-compressed tar layer of a runnable image (repeatable; a tag's layers apply in the order given)", func(v string) error {
		ref, file, ok := strings.Cut(v, "=")
		if !ok || file == "" {
			return errors.New("want repository:tag=file")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		return runnable.addLayer(ref, b)
	})
	fs.Func("image-entrypoint", "`repository:tag=command` the entrypoint of a runnable image given by --image-layer (arguments separated by spaces)", func(v string) error {
		ref, cmd, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(cmd) == "" {
			return errors.New("want repository:tag=command")
		}
		return runnable.setEntrypoint(ref, strings.Fields(cmd))
	})
	fs.Func("api-key", "extra API `key` to accept, for the default service ID (visible in ps: prefer --api-key-file)", func(v string) error {
		if v == "" {
			return errors.New("empty API key")
		}
		opts = append(opts, iamtest.WithAPIKey(v, iamtest.DefaultIdentity()))
		return nil
	})
	fs.Func("fault", "`endpoint=spec` fault to install at start (repeatable); endpoints: iam-token, metadata-token, metadata-iam-token, registry, all; spec as iamtest.ParseFault, e.g. hang, 503,times=2, slow,delay=3s", func(v string) error {
		name, spec, ok := strings.Cut(v, "=")
		if !ok {
			return errors.New("want endpoint=spec")
		}
		f, err := iamtest.ParseFault(spec)
		if err != nil {
			return err
		}
		if name == "all" {
			for _, ep := range iamtest.Endpoints() {
				opts = append(opts, iamtest.WithFault(ep, f))
			}
			return nil
		}
		ep, err := iamtest.ParseEndpoint(name)
		if err != nil {
			return err
		}
		opts = append(opts, iamtest.WithFault(ep, f))
		return nil
	})
	fs.Func("image", "`repository:tag` for the registry to serve (repeatable), besides "+iamtest.DefaultRepository+":"+iamtest.DefaultTag, func(v string) error {
		i := strings.LastIndex(v, ":")
		if i <= 0 || i == len(v)-1 || strings.Contains(v[i:], "/") {
			return errors.New("want repository:tag")
		}
		opts = append(opts, iamtest.WithImage(v[:i], v[i+1:]))
		return nil
	})
	fs.Func("allow-pull", "`iam_id=namespace` allowed to pull (repeatable; * is a wildcard); without any, every identity may pull", func(v string) error {
		id, ns, ok := strings.Cut(v, "=")
		if !ok || id == "" || ns == "" {
			return errors.New("want iam_id=namespace")
		}
		opts = append(opts, iamtest.AllowPull(id, ns))
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := checkLoopback(*listen); err != nil {
		return err
	}
	if *apiKeyFile != "" {
		b, err := os.ReadFile(*apiKeyFile)
		if err != nil {
			return err
		}
		key := strings.TrimSpace(string(b))
		if key == "" {
			return fmt.Errorf("%s: empty API key", *apiKeyFile)
		}
		opts = append(opts, iamtest.WithAPIKey(key, iamtest.DefaultIdentity()))
	}
	opts = append(opts, iamtest.WithAddr(*listen), iamtest.WithTokenLifetime(*lifetime),
		iamtest.WithClockSkew(*skew), iamtest.WithAudience(*audience), iamtest.WithTrustedProfile(sampleProfile))
	if *strict {
		opts = append(opts, iamtest.WithStrictMetadataVersions())
	}
	imgOpts, err := runnable.options()
	if err != nil {
		return err
	}
	opts = append(opts, imgOpts...)
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if *tlsCert != "" {
		if err := checkLoopback(*tlsListen); err != nil {
			return err
		}
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("TLS certificate: %v", err)
		}
		opts = append(opts, iamtest.WithTLS(*tlsListen, cert))
	}
	if *logRequests {
		opts = append(opts, iamtest.WithRequestLog(stderr))
	}
	s, err := iamtest.Start(opts...)
	if err != nil {
		return err
	}
	defer s.Close()

	if *saTokenFile != "" {
		ns, name, ok := strings.Cut(*saTokenFor, "/")
		if !ok || ns == "" || name == "" {
			return fmt.Errorf("--sa-token-for %q: want namespace/name", *saTokenFor)
		}
		tok := iamtest.ServiceAccountToken(ns, name, "uid-"+name, *audience, s.Now().Add(24*time.Hour))
		if err := writeFile(*saTokenFile, []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
	}

	line := "ICR_EMULATOR_URL=" + s.URL
	if s.TLSURL != "" {
		line += "\nICR_EMULATOR_TLS_URL=" + s.TLSURL
	}
	if *urlFile != "" {
		if err := writeAtomic(*urlFile, []byte(line+"\n")); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintln(stdout, line); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "icr-emulator: IAM, VPC metadata and registry (host %s) at %s; default profile %s; faults %v\n",
		s.RegistryHost(), s.URL, iamtest.DefaultProfileID, s.Stats().Faults)
	if s.TLSURL != "" {
		fmt.Fprintf(stderr, "icr-emulator: the same services over TLS at %s\n", s.TLSURL)
	}
	<-ctx.Done()
	fmt.Fprintln(stderr, "icr-emulator: shutting down")
	return nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--listen %q: refusing a non-loopback address; use 127.0.0.1:PORT", addr)
	}
	return nil
}

// SampleServiceAccount and sampleProfile make examples/requests/
// service-account.json work as it is against the emulator: its annotation
// names the profile team-a-pull, which trusts the service account
// default/team-a, for which --sa-token-file mints a token.
const SampleServiceAccount = "default/team-a"

var sampleProfile = iamtest.Profile{
	ID: "Profile-7a3b9c1d-2e4f-4a5b-8c6d-7e8f9a0b1c2d", Name: "team-a-pull",
	TrustedServiceAccounts: []iamtest.ServiceAccount{{Namespace: "default", Name: "team-a"}},
}

// writeAtomic writes data to path through a temporary file in the same
// directory and a rename, so that readers never see a partial file.
func writeAtomic(path string, data []byte) error { return writeFile(path, data, 0o644) }

// writeFile is writeAtomic with the file's mode.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
