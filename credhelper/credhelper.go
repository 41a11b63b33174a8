// Package credhelper serves IAM tokens through the Docker credential-helper
// protocol (github.com/docker/docker-credential-helpers), with which docker,
// nerdctl, buildkit, podman, skopeo and crane ask docker-credential-NAME for
// registry credentials: one argument, the action; input on stdin, the
// answer on stdout:
//
//	get      stdin: a server URL ("us.icr.io", "https://us.icr.io/v2/", ...)
//	         stdout: {"ServerURL":…,"Username":"iambearer","Secret":<IAM token>}
//	list     stdout: {"<host>":"iambearer",...} for every served host
//	store    stdin: {"ServerURL":…,"Username":…,"Secret":…}; nothing is kept
//	erase    stdin: a server URL; nothing to remove
//	version  stdout: the helper's name and version
//
// A failure exits 1 with a message on stdout, which clients compare, trimmed,
// to the strings of docker-credential-helpers' credentials/error.go:
// NotFoundMessage makes them carry on anonymously; any other message is
// shown as "error getting credentials - err: exit status 1, out: `<message>`".
// Tokens are minted on demand, never stored.
package credhelper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/icr-credential-provider/icr-credential-provider/provider"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// HelperName is the name to use in credHelpers entries ("us.icr.io": "icr").
const HelperName = "icr"

// LinkName is the file name clients execute for HelperName.
const LinkName = "docker-credential-" + HelperName

// Package is printed by the version action, as docker-credential-helpers do.
const Package = "github.com/icr-credential-provider/icr-credential-provider"

// The protocol's fixed messages, verbatim from docker-credential-helpers:
// clients compare stdout to them exactly, so never reword them.
const (
	NotFoundMessage         = "credentials not found in native keychain"
	MissingServerURLMessage = "no credentials server URL"
	MissingUsernameMessage  = "no credentials username"
)

// MaxInput bounds what is read from stdin.
const MaxInput = 1 << 20

// Actions lists the protocol's actions, for usage messages.
const Actions = "get|list|store|erase|version"

// Credentials is the protocol's JSON object; the field names are the
// protocol's (no json tags: docker-credential-helpers encodes the Go names).
type Credentials struct {
	ServerURL string
	Username  string
	Secret    string
}

// ProtocolError is a failure whose Message the client matches: it must be
// written on stdout verbatim, nothing else.
type ProtocolError struct {
	Message string
	Hint    string // for a human, on stderr; never part of the answer
}

func (e *ProtocolError) Error() string { return e.Message }

// IsNotFound reports whether err is the protocol's "credentials not found".
func IsNotFound(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe) && pe.Message == NotFoundMessage
}

// UsageError is an unknown or missing action.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

// Helper answers the protocol's actions for a set of served hosts.
type Helper struct {
	Hosts   *provider.HostSet // any other host is "not found"
	Token   token.Source      // called only by get for a served host
	Warn    func(msg string)  // non-fatal findings, one line each; nil drops them
	Version string            // printed by the version action
}

// Run performs action with the protocol's input in and writes the answer to
// out, only on success; on failure the caller writes the error.
func (h *Helper) Run(ctx context.Context, action string, in io.Reader, out io.Writer) error {
	var answer []byte
	var err error
	switch action {
	case "get":
		var c Credentials
		var serverURL string
		if serverURL, err = readServerURL(ctx, in); err == nil {
			if c, err = h.Get(ctx, serverURL); err == nil {
				answer, err = json.Marshal(c)
			}
		}
	case "list":
		answer, err = json.Marshal(h.List())
	case "store":
		err = h.Store(ctx, in)
	case "erase":
		_, err = readServerURL(ctx, in) // nothing is stored, so nothing is removed
	case "version":
		answer = fmt.Appendf(nil, "%s (%s) %s", LinkName, Package, h.Version)
	case "":
		err = &UsageError{"no action given: use one of " + Actions}
	default:
		err = &UsageError{fmt.Sprintf("unknown credential action %q: use one of %s", action, Actions)}
	}
	if err != nil {
		return err
	}
	if answer != nil {
		_, err = out.Write(append(answer, '\n'))
	}
	return err
}

// Get returns the credentials for serverURL: username iambearer and an IAM
// token if its host is served, else the protocol's not-found error.
func (h *Helper) Get(ctx context.Context, serverURL string) (Credentials, error) {
	host, ok := provider.ServerHost(serverURL)
	if !ok || !h.Hosts.Serves(host) {
		return Credentials{}, &ProtocolError{Message: NotFoundMessage}
	}
	tok, err := h.Token.Token(ctx)
	if err != nil {
		return Credentials{}, err
	}
	if tok.AccessToken == "" {
		return Credentials{}, errors.New("the token source returned an empty token: this is a bug, please report it")
	}
	return Credentials{ServerURL: serverURL, Username: provider.Username, Secret: tok.AccessToken}, nil
}

func (h *Helper) List() map[string]string {
	m := make(map[string]string, len(h.Hosts.Hosts()))
	for _, host := range h.Hosts.Hosts() {
		m[host] = provider.Username
	}
	return m
}

// Store validates a credential as docker-credential-helpers does and keeps
// nothing. Its secret is never echoed.
func (h *Helper) Store(ctx context.Context, in io.Reader) error {
	b, err := readInput(ctx, in)
	if err != nil {
		return err
	}
	var c Credentials
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&c); err != nil {
		return fmt.Errorf("store expects the JSON of a credential on stdin ({\"ServerURL\":…,\"Username\":…,\"Secret\":…}): %s", provider.DescribeJSONError(err, b))
	}
	if strings.TrimSpace(c.ServerURL) == "" {
		return &ProtocolError{Message: MissingServerURLMessage, Hint: "store needs a ServerURL in the credential on stdin"}
	}
	if strings.TrimSpace(c.Username) == "" {
		return &ProtocolError{Message: MissingUsernameMessage, Hint: "store needs a Username in the credential on stdin"}
	}
	host, ok := provider.ServerHost(c.ServerURL)
	if (!ok || !h.Hosts.Serves(host)) && h.Warn != nil {
		if !ok {
			host = "that server URL" // never echo the input
		}
		h.Warn(fmt.Sprintf("credentials for %s were not stored: %s keeps no credentials and does not serve that registry; route only ICR hosts to it with per-host credHelpers entries, not credsStore", host, LinkName))
	}
	return nil
}

// readServerURL reads the server URL of get and erase: all of stdin, white
// space trimmed, as docker-credential-helpers does.
func readServerURL(ctx context.Context, in io.Reader) (string, error) {
	b, err := readInput(ctx, in)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", &ProtocolError{Message: MissingServerURLMessage, Hint: "pipe the registry on stdin, e.g. echo us.icr.io | " + LinkName + " get"}
	}
	return s, nil
}

// readInput reads stdin, bounded in size and by ctx.
func readInput(ctx context.Context, in io.Reader) ([]byte, error) {
	if in == nil {
		return nil, nil
	}
	b, err := provider.ReadInput(ctx, in, MaxInput)
	if err != nil {
		return nil, fmt.Errorf("%v: the protocol sends a server URL or one small JSON object", err)
	}
	return b, nil
}
