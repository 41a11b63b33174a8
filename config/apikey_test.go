package config

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLoadAPIKeyFile(t *testing.T) {
	const key = "SECRETapikeyAbCdEfGhIjKlMnOpQrStUvWxYz012345"
	tests := []struct {
		name string
		// setup creates what path names and returns the path.
		setup        func(t *testing.T, dir string) string
		wantKey      string
		wantWarning  string // "" for none
		wantErr      string // a part of the error; "" for success
		wantFix      string
		notInMessage []string
	}{{
		name:    "bare key",
		setup:   file(key, 0o600),
		wantKey: key,
	}, {
		name:    "bare key with surrounding white space",
		setup:   file("\n  "+key+"\r\n\n", 0o600),
		wantKey: key,
	}, {
		name:        "world-readable: accepted with a warning",
		setup:       file(key, 0o644),
		wantKey:     key,
		wantWarning: "readable by other users (mode 0644)",
	}, {
		name:        "group-readable: accepted with a warning",
		setup:       file(key, 0o640),
		wantKey:     key,
		wantWarning: "chmod 0600",
	}, {
		name:    "JSON from 'ibmcloud iam service-api-key-create --file'",
		setup:   file(`{"name":"icr","description":"pulls","createdAt":"2031-05-06T07:08+0000","apikey":"`+key+`"}`, 0o600),
		wantKey: key,
	}, {
		name:    "JSON with white space around the key",
		setup:   file("{\n  \"apikey\": \"  "+key+" \"\n}\n", 0o600),
		wantKey: key,
	}, {
		name:    "missing",
		setup:   func(t *testing.T, dir string) string { return filepath.Join(dir, "nope") },
		wantErr: "does not exist",
		wantFix: "service-api-key-create",
	}, {
		name:    "empty",
		setup:   file("", 0o600),
		wantErr: "is empty",
		wantFix: "put the API key in it",
	}, {
		name:    "only white space",
		setup:   file(" \n\t\n", 0o600),
		wantErr: "is empty",
	}, {
		name: "directory",
		setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "keydir")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		},
		wantErr: "is not a regular file",
		wantFix: "--api-key-file",
	}, {
		name:         "JSON without apikey",
		setup:        file(`{"name":"icr","api_key":"`+key+`"}`, 0o600),
		wantErr:      `has no "apikey" field`,
		notInMessage: []string{key},
	}, {
		name:         "JSON with an empty apikey",
		setup:        file(`{"apikey":"  "}`, 0o600),
		wantErr:      `has no "apikey" field`,
		notInMessage: []string{key},
	}, {
		name:         "broken JSON",
		setup:        file(`{"apikey":"`+key+`"`, 0o600),
		wantErr:      "looks like JSON",
		notInMessage: []string{key},
	}, {
		name:         "two words",
		setup:        file(key+" "+key[:10]+"second", 0o600),
		wantErr:      "more than one word",
		notInMessage: []string{key, "second"},
	}, {
		name:         "two lines",
		setup:        file(key+"\n"+key+"\n", 0o600),
		wantErr:      "more than one word",
		notInMessage: []string{key},
	}, {
		name:         "JSON apikey with two words",
		setup:        file(`{"apikey":"`+key+` second"}`, 0o600),
		wantErr:      "more than one word",
		notInMessage: []string{key, "second"},
	}, {
		name:         "larger than 64 KiB",
		setup:        file(strings.Repeat(key, (64<<10)/len(key)+1), 0o600),
		wantErr:      "larger than 64 KiB",
		notInMessage: []string{key},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.setup(t, t.TempDir())
			got, warnings, err := LoadAPIKeyFile(path)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, key of %d bytes", len(got))
				}
				msg := err.Error()
				if !strings.Contains(msg, tc.wantErr) || !strings.Contains(msg, path) || !strings.Contains(msg, tc.wantFix) {
					t.Errorf("error %q: want %q, the path and %q", msg, tc.wantErr, tc.wantFix)
				}
				if strings.ContainsAny(msg, "\r\n") {
					t.Errorf("error is not one line: %q", msg)
				}
				for _, s := range append(tc.notInMessage, key) {
					if strings.Contains(msg, s) {
						t.Errorf("error quotes the file's content: %q", msg)
					}
				}
				if got != "" || warnings != nil {
					t.Errorf("key or warnings with the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.wantKey {
				t.Errorf("key of %d bytes, want %d bytes", len(got), len(tc.wantKey))
			}
			switch {
			case tc.wantWarning == "" && len(warnings) != 0:
				t.Errorf("warnings %v", warnings)
			case tc.wantWarning != "" && (len(warnings) != 1 || !strings.Contains(string(warnings[0]), tc.wantWarning)):
				t.Errorf("warnings %v, want %q", warnings, tc.wantWarning)
			}
			for _, w := range warnings {
				if strings.Contains(string(w), key) {
					t.Errorf("warning quotes the key")
				}
			}
		})
	}
}

func TestLoadAPIKeyFileUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root reads any file: run this test again as nobody.
		runAsNobody(t, "TestLoadAPIKeyFileUnreadable")
		return
	}
	path := file("SECRET-unreadable", 0o000)(t, t.TempDir())
	_, _, err := LoadAPIKeyFile(path)
	if err == nil || !strings.Contains(err.Error(), "not readable") || !strings.Contains(err.Error(), "0600") {
		t.Errorf("err %v", err)
	}
}

// file returns a setup that writes content with mode to a file.
func file(content string, mode os.FileMode) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		t.Helper()
		p := filepath.Join(dir, "apikey")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // despite umask
			t.Fatal(err)
		}
		return p
	}
}

// runAsNobody runs the named test of this test binary again as uid/gid
// 65534, from a copy of the binary that user may execute.
func runAsNobody(t *testing.T, test string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "iam-nobody")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "iam.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+test+"$", "-test.count=1")
	cmd.Dir = tmp
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + tmp, "HOME=" + tmp}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("%s as nobody: %v\n%s", test, err, out)
	}
}

// TestAPIKeyFileIsNotAFIFO: a FIFO (or any other non-regular file) as the
// key file is refused at once: opening one for reading would wait for a
// writer for as long as there is none.
func TestAPIKeyFileIsNotAFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := LoadAPIKeyFile(p); done <- err }()
	err := <-done // a blocking open would hang here until the test's own timeout
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Cause, "not a regular file") || !strings.Contains(ce.Fix, "--api-key-file") {
		t.Fatalf("err = %v", err)
	}
}
