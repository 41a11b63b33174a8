package installer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kubeletv1 "k8s.io/kubelet/config/v1"
)

const testKey = "0123456789abcdefghijABCDEFGHIJ_-0123456789"

// secretVolume lays out a Secret as the kubelet mounts it: the key file is
// a link into ..data, itself a link to a timestamped directory.
func secretVolume(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_01_02_03_04_05.000000001")
	os.Mkdir(ts, 0o755)
	os.WriteFile(filepath.Join(ts, "apikey"), []byte(content), 0o644)
	os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data"))
	os.Symlink("..data/apikey", filepath.Join(dir, "apikey"))
	return filepath.Join(dir, "apikey")
}

func TestAPIKeyFromSecret(t *testing.T) {
	for _, form := range []string{testKey + "\n", `{"name":"node-puller","apikey":"` + testKey + `"}`} {
		src := secretVolume(t, form)
		dst := filepath.Join(t.TempDir(), "apikey")
		key, err := CheckAPIKey(src, dst)
		if err != nil {
			t.Fatal(err)
		}
		if a, err := WriteAPIKey(key, dst); err != nil || a != Created {
			t.Fatalf("%v %v", a, err)
		}
		fi, _ := os.Stat(dst)
		if b, _ := os.ReadFile(dst); string(b) != testKey+"\n" || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%q %v", b, fi.Mode())
		}
		mt := fi.ModTime()
		time.Sleep(10 * time.Millisecond)
		if a, err := WriteAPIKey(key, dst); err != nil || a != Unchanged {
			t.Fatalf("again: %v %v", a, err)
		}
		if fi, _ := os.Stat(dst); !fi.ModTime().Equal(mt) {
			t.Error("an unchanged key file was rewritten")
		}
		os.Chmod(dst, 0o644)
		if a, _ := WriteAPIKey(key, dst); a != Updated {
			t.Errorf("mode fix: %v", a)
		}
		if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v", fi.Mode())
		}
	}
}

// A Secret that holds no usable key: one line naming the file and the fix,
// never the content, and no key file written.
func TestAPIKeyFromBadSecret(t *testing.T) {
	tests := []struct {
		name  string
		src   func(t *testing.T) string
		dst   func(t *testing.T) string
		wants []string
	}{
		{name: "empty", src: func(t *testing.T) string { return secretVolume(t, "\n") }, wants: []string{"is empty"}},
		{name: "two words", src: func(t *testing.T) string { return secretVolume(t, "secret-part-one secret-part-two") }, wants: []string{"more than one word"}},
		{name: "JSON without apikey", src: func(t *testing.T) string { return secretVolume(t, `{"key":"secret-part-one"}`) }, wants: []string{`no "apikey" field`}},
		{name: "missing", src: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, wants: []string{"does not exist"}},
		{name: "fifo", src: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "fifo")
			if err := mkfifo(p); err != nil {
				t.Skip(err)
			}
			return p
		}, wants: []string{"not a regular file"}},
		{name: "directory", src: func(t *testing.T) string { return t.TempDir() }, wants: []string{"not a regular file"}},
		{name: "target is a link", src: func(t *testing.T) string { return secretVolume(t, testKey) }, dst: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "apikey")
			os.Symlink("/etc/shadow", p)
			return p
		}, wants: []string{"symbolic link"}},
		{name: "target dir missing", src: func(t *testing.T) string { return secretVolume(t, testKey) }, dst: func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "missing", "apikey")
		}, wants: []string{"does not exist"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "apikey")
			if tc.dst != nil {
				dst = tc.dst(t)
			}
			before, _ := os.Lstat(dst)
			_, err := CheckAPIKey(tc.src(t), dst)
			if err == nil || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v", err)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			for _, s := range []string{"secret-part", testKey} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("the error shows the file's content: %v", err)
				}
			}
			if after, _ := os.Lstat(dst); (before == nil) != (after == nil) {
				t.Error("the key file changed")
			}
		})
	}
}

func TestConfigNamesTheKeyFileWritten(t *testing.T) {
	b, err := Config(Provider{APIKeyFileWritten: "/etc/kubernetes/icr-credential-provider/apikey", Env: []kubeletv1.ExecEnvVar{{Name: "ICR_API_KEY_FILE", Value: "/etc/kubernetes/icr-credential-provider/apikey"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := APIKeyFileWritten(b); got != "/etc/kubernetes/icr-credential-provider/apikey" {
		t.Errorf("got %q from\n%s", got, b)
	}
	if _, err := DecodeConfig(b); err != nil {
		t.Error(err)
	}
	plain, _ := Config(Provider{})
	if APIKeyFileWritten(plain) != "" || APIKeyFileWritten([]byte(apiKeyComment+"/x\n")) != "" {
		t.Error("a key file named where none was written")
	}
	if _, err := Config(Provider{APIKeyFileWritten: "/x\nkind: evil"}); err == nil {
		t.Error("line break accepted")
	}
}
