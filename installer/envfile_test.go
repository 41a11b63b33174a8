package installer

import (
	"strings"
	"testing"
)

func TestAppendToEnvVar(t *testing.T) {
	add := []string{"--a=/x", "--b=/y"}
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "missing file", in: "", want: "KUBELET_EXTRA_ARGS=--a=/x --b=/y\n"},
		{name: "no assignment, no final newline", in: "# comment\nOTHER=1", want: "# comment\nOTHER=1\nKUBELET_EXTRA_ARGS=--a=/x --b=/y\n"},
		{name: "empty", in: "KUBELET_EXTRA_ARGS=\n", want: "KUBELET_EXTRA_ARGS=--a=/x --b=/y\n"},
		{name: "empty with blanks", in: "KUBELET_EXTRA_ARGS=   \n", want: "KUBELET_EXTRA_ARGS=   --a=/x --b=/y\n"},
		{name: "unquoted", in: "A=1\nKUBELET_EXTRA_ARGS=--max-pods=150 --v=2\t\nB=2\n", want: "A=1\nKUBELET_EXTRA_ARGS=--max-pods=150 --v=2 --a=/x --b=/y\t\nB=2\n"},
		{name: "double quoted", in: "KUBELET_EXTRA_ARGS=\"--v=2\"\n", want: "KUBELET_EXTRA_ARGS=\"--v=2 --a=/x --b=/y\"\n"},
		{name: "empty double quotes", in: "KUBELET_EXTRA_ARGS=\"\"\n", want: "KUBELET_EXTRA_ARGS=\"--a=/x --b=/y\"\n"},
		{name: "single quoted", in: "KUBELET_EXTRA_ARGS='--v=2'\r\n", want: "KUBELET_EXTRA_ARGS='--v=2 --a=/x --b=/y'\r\n"},
		{name: "blanks around =", in: "  KUBELET_EXTRA_ARGS = --v=2\n", want: "  KUBELET_EXTRA_ARGS = --v=2 --a=/x --b=/y\n"},
		{name: "the last assignment wins", in: "KUBELET_EXTRA_ARGS=--v=1\nKUBELET_EXTRA_ARGS=--v=2\n", want: "KUBELET_EXTRA_ARGS=--v=1\nKUBELET_EXTRA_ARGS=--v=2 --a=/x --b=/y\n"},
		{name: "commented out", in: "#KUBELET_EXTRA_ARGS=--v=9\n; KUBELET_EXTRA_ARGS=--v=8\n", want: "#KUBELET_EXTRA_ARGS=--v=9\n; KUBELET_EXTRA_ARGS=--v=8\nKUBELET_EXTRA_ARGS=--a=/x --b=/y\n"},
		{name: "continued line", in: "KUBELET_EXTRA_ARGS=--v=2 \\\n  --max-pods=10\nX=1\n", want: "KUBELET_EXTRA_ARGS=--v=2 \\\n  --max-pods=10 --a=/x --b=/y\nX=1\n"},
		{name: "quoted over two lines", in: "KUBELET_EXTRA_ARGS=\"--v=2\n--max-pods=10\"\n", want: "KUBELET_EXTRA_ARGS=\"--v=2\n--max-pods=10 --a=/x --b=/y\"\n"},
		{name: "a similar name", in: "MY_KUBELET_EXTRA_ARGS=--v=2\n", want: "MY_KUBELET_EXTRA_ARGS=--v=2\nKUBELET_EXTRA_ARGS=--a=/x --b=/y\n"},
		{name: "export", in: "export KUBELET_EXTRA_ARGS=--v=2\n", wantErr: "export"},
		{name: "text after the quote", in: "KUBELET_EXTRA_ARGS=\"--v=2\" --x\n", wantErr: "after its closing quote"},
		{name: "trailing backslash at the end", in: "KUBELET_EXTRA_ARGS=--v=2 \\", wantErr: "backslash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendToEnvVar([]byte(tc.in), "KUBELET_EXTRA_ARGS", add)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
			// What systemd would put in the variable: the old words, then ours.
			v, ok := envValue(got, "KUBELET_EXTRA_ARGS")
			if !ok || !strings.HasSuffix(v, "--a=/x --b=/y") {
				t.Errorf("value %q", v)
			}
		})
	}
}

func TestParseEnvFile(t *testing.T) {
	in := "A=1\n  B = \"two words\"  \nC='$HOME \\n'\nD=a\\ b\\\\\n# E=5\nnoequals\nexport F=6\nG=\"x\\\"y\"\n"
	want := map[string]string{"A": "1", "B": "two words", "C": "$HOME \\n", "D": "a b\\", "F": "6", "G": "x\"y"}
	got := map[string]string{}
	for _, a := range parseEnvFile([]byte(in)) {
		got[a.Name] = a.Value
	}
	if len(got) != len(want) {
		t.Errorf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestUnitParsing(t *testing.T) {
	files := []unitFile{
		{Path: "/usr/lib/systemd/system/kubelet.service", Content: []byte("[Service]\nExecStart=/usr/bin/kubelet\nEnvironmentFile=/etc/a\n")},
		{Path: "/etc/systemd/system/kubelet.service.d/10.conf", Content: []byte("[Unit]\nExecStart=/not/service\n[Service]\nEnvironment=\"X=a b\" Y=c\nEnvironmentFile=\nEnvironmentFile=-/etc/default/kubelet\nExecStart=\nExecStart=/usr/bin/kubelet \\\n  $KUBELET_EXTRA_ARGS --v=2 # not a comment\n")},
	}
	s := parseService(files)
	if s.ExecStartFrom != files[1].Path || strings.Join(unitWords(s.ExecStart), "|") != "/usr/bin/kubelet|$KUBELET_EXTRA_ARGS|--v=2|#|not|a|comment" {
		t.Errorf("ExecStart %q from %s", s.ExecStart, s.ExecStartFrom)
	}
	if strings.Join(s.EnvironmentFiles, ",") != "/etc/default/kubelet" {
		t.Errorf("EnvironmentFiles %v", s.EnvironmentFiles)
	}
	if strings.Join(s.Environment, ",") != "X=a b,Y=c" {
		t.Errorf("Environment %v", s.Environment)
	}
}

func TestFlagValues(t *testing.T) {
	args := []string{"--v=2", "--image-credential-provider-config=/a", "--image-credential-provider-config", "/b", "-image-credential-provider-config=/c", "image-credential-provider-config=/d", "--image-credential-provider-config-x=/e"}
	if got := strings.Join(flagValues(args, FlagConfig), ","); got != "/a,/b,/c" {
		t.Errorf("got %s", got)
	}
}
