package installer

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

// Systemd acts on the host's services. Restart returns when the restart
// job is done (systemctl's default), not when the service is healthy.
type Systemd interface {
	Restart(ctx context.Context, unit string) error
}

// DefaultSystemctl is the command that runs the host's systemctl from a pod
// with hostPID: it enters the namespaces of the host's init.
var DefaultSystemctl = []string{"nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--", "systemctl"}

// Systemctl runs Command, then "restart" and the unit.
type Systemctl struct {
	Command []string
	// Root, when not "" or "/", is the host's root, where Command[0] is
	// looked up and run chrooted: an image without nsenter uses the host's.
	Root string
}

// NewSystemctl returns the Systemctl of command ("": DefaultSystemctl,
// else split at blanks). For the default, an nsenter missing from this
// image is taken from the host at hostRoot.
func NewSystemctl(command, hostRoot string) (Systemctl, error) {
	if strings.TrimSpace(command) != "" {
		return Systemctl{Command: strings.Fields(command)}, nil
	}
	s := Systemctl{Command: DefaultSystemctl}
	if _, err := exec.LookPath(s.Command[0]); err != nil && hostRoot != "" && hostRoot != "/" {
		s.Root = hostRoot
	}
	return s, nil
}

// restartTimeout bounds one systemctl run, which waits for the stop and
// start jobs: a large k3s server takes a while.
const restartTimeout = 5 * time.Minute

// Restart's error names the command and carries the first line it printed.
func (s Systemctl) Restart(ctx context.Context, unit string) error {
	if len(s.Command) == 0 {
		return errors.New("no systemctl command")
	}
	ctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	args := append(append([]string{}, s.Command[1:]...), "restart", unit)
	cmd := exec.CommandContext(ctx, s.Command[0], args...)
	if s.Root != "" && s.Root != "/" {
		p, err := lookPathIn(s.Root, s.Command[0])
		if err != nil {
			return err
		}
		cmd = exec.CommandContext(ctx, filepath.Join(s.Root, p), args...)
		cmd.Path = p // resolved again inside the chroot
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: s.Root}
		cmd.Dir = "/"
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
		if msg != "" {
			msg = ": " + msg[:min(len(msg), 300)]
		}
		return fmt.Errorf("'%s restart %s': %v%s", strings.Join(s.Command, " "), unit, err, msg)
	}
	return nil
}

// lookPathIn finds an executable name in the usual directories under root
// and returns its path as seen from root.
func lookPathIn(root, name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, d := range []string{"/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(filepath.Join(root, p)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is neither in this image nor on the host under %s: give --systemctl with a command that runs the host's systemctl", name, root)
}

// DefaultHealthzURL is the kubelet's health endpoint (healthzBindAddress
// 127.0.0.1, healthzPort 10248, the defaults of kubeadm, k3s and RKE2); a
// pod reaches it with hostNetwork.
const DefaultHealthzURL = "http://127.0.0.1:10248/healthz"

// DefaultKubeletTimeout bounds the wait for the kubelet to become healthy.
const DefaultKubeletTimeout = 2 * time.Minute

const defaultInterval = time.Second // between two health probes

// Health is how the kubelet's health is judged after a restart.
type Health struct {
	URL      string        // "": DefaultHealthzURL
	Timeout  time.Duration // 0: DefaultKubeletTimeout
	Interval time.Duration // 0: defaultInterval
	Client   *http.Client  // nil: no proxy, a few seconds per probe
}

// Wait polls the endpoint until it answers 200 "ok" or the timeout passes;
// the error says what the last probe saw.
func (hc Health) Wait(ctx context.Context) error {
	url := cmp.Or(hc.URL, DefaultHealthzURL)
	timeout, interval := hc.Timeout, hc.Interval
	if timeout <= 0 {
		timeout = DefaultKubeletTimeout
	}
	if interval <= 0 {
		interval = defaultInterval
	}
	client := hc.Client
	if client == nil {
		// Node-local, as the metadata service: never through a proxy.
		client = &http.Client{Timeout: 5 * time.Second, Transport: iam.NewMetadataTransport(2 * time.Second)}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		err := probe(ctx, client, url)
		if err == nil {
			return nil
		}
		// A probe cut short by the deadline says less than the one before.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy within %v (GET %s: %v)", timeout, url, last)
		case <-time.After(interval):
		}
	}
}

func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			return ue.Unwrap()
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("status %d, %q", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
