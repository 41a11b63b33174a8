package iamtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// client is a plain HTTP client that never goes through a proxy.
var client = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}

type answer struct {
	status int
	header http.Header
	raw    []byte
	json   map[string]any
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL.Path, err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: b}
	_ = json.Unmarshal(b, &a.json)
	return a
}

func newReq(t *testing.T, method, u string, body string, hdr ...string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

func postForm(t *testing.T, s *Server, form url.Values) answer {
	t.Helper()
	return do(t, newReq(t, http.MethodPost, s.IAMURL()+"/identity/token", form.Encode(),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "application/json"))
}

func apikeyForm(key string) url.Values {
	return url.Values{"grant_type": {GrantTypeAPIKey}, "apikey": {key}, "response_type": {"cloud_iam"}}
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func num(m map[string]any, k string) int64 {
	f, _ := m[k].(float64)
	return int64(f)
}

// mdToken gets an instance identity token through the v1 path.
func mdToken(t *testing.T, s *Server) string {
	t.Helper()
	a := do(t, newReq(t, http.MethodPut, s.MetadataURL()+"/instance_identity/v1/token?version=2022-03-01", `{"expires_in": 300}`,
		"Metadata-Flavor", "ibm", "Content-Type", "application/json"))
	if a.status != 200 || str(a.json, "access_token") == "" {
		t.Fatalf("metadata token: %d %s", a.status, a.raw)
	}
	return str(a.json, "access_token")
}

// iamToken gets an IAM access token for DefaultAPIKey.
func iamToken(t *testing.T, s *Server) string {
	t.Helper()
	a := postForm(t, s, apikeyForm(DefaultAPIKey))
	if a.status != 200 {
		t.Fatalf("IAM token: %d %s", a.status, a.raw)
	}
	return str(a.json, "access_token")
}

func errorCode(a answer) string {
	if c := str(a.json, "errorCode"); c != "" {
		return c
	}
	if errs, ok := a.json["errors"].([]any); ok && len(errs) > 0 {
		if e, ok := errs[0].(map[string]any); ok {
			return str(e, "code")
		}
	}
	return ""
}
