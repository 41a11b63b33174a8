package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

var client = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "url")
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("file-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--url-file", urlFile, "--api-key-file", keyFile,
			"--token-lifetime", "10m", "--fault", "metadata-token=hang", "--fault", "iam-token=503,times=1", "--image", "team/tool:v1"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "ICR_EMULATOR_URL=")
	if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("first line %q", line)
	}
	if b, err := os.ReadFile(urlFile); err != nil || string(b) != line {
		t.Errorf("url file %q %v", b, err)
	}
	go io.Copy(io.Discard, pr)

	form := url.Values{"grant_type": {iamtest.GrantTypeAPIKey}, "apikey": {"file-key"}}
	post := func() *http.Response {
		resp, err := client.PostForm(base+"/identity/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post(); r.StatusCode != 503 {
		t.Errorf("first IAM request %d, want the 503 fault", r.StatusCode)
	}
	if r := post(); r.StatusCode != 200 {
		t.Errorf("second IAM request %d", r.StatusCode)
	}
	// Flip a fault over HTTP and read the stats.
	resp, err := client.Post(base+"/_emulator/fault?endpoint=metadata-token&kind=none", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("control: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodPut, base+"/instance_identity/v1/token?version=2022-03-01", strings.NewReader("{}"))
	req.Header.Set("Metadata-Flavor", "ibm")
	if resp, err = client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("metadata after clearing the fault: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = client.Get(base + "/_emulator/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st iamtest.Stats
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Counts["iam-token"] != 2 || st.Grants != 1 || st.Counts["metadata-token"] != 1 || st.Faults["metadata-token"] != "none" {
		t.Errorf("stats %+v", st)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestRunRejects(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:0"},
		{"--listen", ":8080"},
		{"--fault", "nowhere=hang"},
		{"--fault", "iam-token=explode"},
		{"--image", "noTag"},
		{"extra"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
