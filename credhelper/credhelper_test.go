package credhelper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/provider"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

func newHelper(t *testing.T, extra ...string) (*Helper, *int) {
	t.Helper()
	hosts, err := provider.NewHostSet(extra)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	return &Helper{
		Hosts:   hosts,
		Version: "v1.2.3",
		Token: token.SourceFunc(func(ctx context.Context) (token.Token, error) {
			calls++
			now := time.Now()
			return token.Token{AccessToken: "tok-123456", IssuedAt: now, Expiry: now.Add(time.Hour)}, nil
		}),
	}, &calls
}

func TestRunGet(t *testing.T) {
	h, calls := newHelper(t)
	var out bytes.Buffer
	if err := h.Run(context.Background(), "get", strings.NewReader("https://us.icr.io/v2/\n"), &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), `{"ServerURL":"https://us.icr.io/v2/","Username":"iambearer","Secret":"tok-123456"}`+"\n"; got != want {
		t.Errorf("get answer %q, want %q", got, want)
	}
	out.Reset()
	for _, u := range []string{"cp.icr.io", "docker.io", "us.icr.io.evil.com", "us.icr.io:444"} {
		err := h.Run(context.Background(), "get", strings.NewReader(u), &out)
		if !IsNotFound(err) || out.Len() != 0 {
			t.Errorf("get %q: %v, output %q; want not found and no output", u, err, out.String())
		}
	}
	if *calls != 1 {
		t.Errorf("%d token calls, want 1 (only for the served host)", *calls)
	}
}

func TestRunGetTokenError(t *testing.T) {
	h, _ := newHelper(t)
	h.Token = token.SourceFunc(func(ctx context.Context) (token.Token, error) { return token.Token{}, errors.New("IAM says no") })
	var out bytes.Buffer
	err := h.Run(context.Background(), "get", strings.NewReader("us.icr.io"), &out)
	if err == nil || err.Error() != "IAM says no" || out.Len() != 0 {
		t.Errorf("got %v, output %q", err, out.String())
	}
}

func TestRunList(t *testing.T) {
	h, calls := newHelper(t, "127.0.0.1:5000")
	var out bytes.Buffer
	if err := h.Run(context.Background(), "list", nil, &out); err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != len(provider.DefaultHosts())+1 || m["127.0.0.1:5000"] != "iambearer" || m["us.icr.io"] != "iambearer" {
		t.Errorf("list: %v", m)
	}
	if *calls != 0 {
		t.Error("list minted a token")
	}
}

func TestRunStoreErase(t *testing.T) {
	h, calls := newHelper(t)
	var warnings []string
	h.Warn = func(m string) { warnings = append(warnings, m) }
	const secret = "pw-that-must-not-leak"
	run := func(action, in string) error {
		var out bytes.Buffer
		err := h.Run(context.Background(), action, strings.NewReader(in), &out)
		if out.Len() != 0 {
			t.Errorf("%s wrote %q", action, out.String())
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the secret appears in the error", action)
		}
		return err
	}
	if err := run("store", `{"ServerURL":"us.icr.io","Username":"iambearer","Secret":"`+secret+`"}`); err != nil || len(warnings) != 0 {
		t.Errorf("store us.icr.io: %v %v", err, warnings)
	}
	if err := run("store", `{"ServerURL":"docker.io","Username":"me","Secret":"`+secret+`"}`); err != nil || len(warnings) != 1 || strings.Contains(warnings[0], secret) {
		t.Errorf("store docker.io: %v %v", err, warnings)
	}
	for in, want := range map[string]string{
		`{"Username":"u","Secret":"` + secret + `"}`:                  MissingServerURLMessage,
		`{"ServerURL":"us.icr.io","Secret":"` + secret + `"}`:         MissingUsernameMessage,
		`{"ServerURL":"us.icr.io","Username":"u","Secret":"` + secret: "it ends early",
		`{"ServerURL":"us.icr.io","Username":7}`:                      `field "Username" has the wrong type (a JSON number, not string)`,
		`#not json ` + secret:                                         "syntax error at byte 1",
		``:                                                            "it is empty",
	} {
		if err := run("store", in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("store: %v, want %q", err, want)
		}
	}
	if err := run("erase", "us.icr.io"); err != nil {
		t.Errorf("erase: %v", err)
	}
	if err := run("erase", "\n"); err == nil || err.Error() != MissingServerURLMessage {
		t.Errorf("erase without URL: %v", err)
	}
	if err := run("store", strings.Repeat(" ", MaxInput+1)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized store: %v", err)
	}
	if *calls != 0 {
		t.Error("store or erase minted a token")
	}
}

func TestRunVersionAndUsage(t *testing.T) {
	h, _ := newHelper(t)
	var out bytes.Buffer
	if err := h.Run(context.Background(), "version", nil, &out); err != nil || out.String() != "docker-credential-icr ("+Package+") v1.2.3\n" {
		t.Errorf("version: %v %q", err, out.String())
	}
	for _, a := range []string{"", "GET", "login"} {
		var ue *UsageError
		if err := h.Run(context.Background(), a, nil, &out); !errors.As(err, &ue) {
			t.Errorf("action %q: %v, want a usage error", a, err)
		}
	}
}
