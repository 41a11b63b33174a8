package iamtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testLayer is a gzip-compressed tar holding one file.
func testLayer(t *testing.T, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// selfSigned is a certificate for hosts, its own CA.
func selfSigned(t *testing.T, hosts ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// A runnable image over TLS, reached as us.icr.io: the challenge names the
// realm on us.icr.io, the layers are served by digest, and the registry
// records who pulled.
func TestRunnableImageOverTLS(t *testing.T) {
	cert, pool := selfSigned(t, "us.icr.io", "127.0.0.1")
	layer := testLayer(t, "hello", "#!/bin/true\n")
	s := NewServer(WithTLS("127.0.0.1:0", cert), WithImageLayers("team/hello", "1", []string{"/hello"}, layer))
	defer s.Close()
	if !strings.HasPrefix(s.TLSURL, "https://127.0.0.1:") {
		t.Fatalf("TLSURL %q", s.TLSURL)
	}
	tlsAddr := strings.TrimPrefix(s.TLSURL, "https://")
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != "us.icr.io:443" {
				t.Errorf("dial %s", addr)
			}
			return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
		},
	}}
	get := func(path, auth string) answer {
		t.Helper()
		req := newReq(t, http.MethodGet, "https://us.icr.io"+path, "")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		a := answer{status: resp.StatusCode, header: resp.Header, raw: buf.Bytes()}
		_ = json.Unmarshal(a.raw, &a.json)
		return a
	}

	a := get("/v2/team/hello/manifests/1", "")
	want := `Bearer realm="https://us.icr.io/oauth/token",service="registry",scope="repository:team/hello:pull"`
	if a.status != 401 || a.header.Get("WWW-Authenticate") != want {
		t.Fatalf("challenge over TLS: %d %q", a.status, a.header.Get("WWW-Authenticate"))
	}
	// The plain listener keeps its own realm.
	if a := do(t, newReq(t, http.MethodGet, s.URL+"/v2/", "")); !strings.Contains(a.header.Get("WWW-Authenticate"), `realm="`+s.URL+`/oauth/token"`) {
		t.Errorf("plain challenge %q", a.header.Get("WWW-Authenticate"))
	}

	a = do(t, newReq(t, http.MethodPost, s.MetadataURL()+"/instance_identity/v1/iam_token?version=2022-03-01", `{"trusted_profile":{"id":"`+DefaultProfileID+`"}}`,
		"Authorization", "Bearer "+mdToken(t, s), "Content-Type", "application/json", "Metadata-Flavor", "ibm"))
	iamTok := str(a.json, "access_token")
	claims, err := DecodeClaims(iamTok)
	if err != nil {
		t.Fatal(err)
	}
	req := newReq(t, http.MethodGet, "https://us.icr.io/oauth/token?service=registry&scope=repository:team/hello:pull", "")
	req.SetBasicAuth("iambearer", iamTok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	bearer := "Bearer " + tok.Token

	a = get("/v2/team/hello/manifests/1", bearer)
	var m struct {
		Config struct{ Digest string }
		Layers []struct {
			MediaType, Digest string
			Size              int
		}
	}
	if err := json.Unmarshal(a.raw, &m); a.status != 200 || err != nil || len(m.Layers) != 1 {
		t.Fatalf("manifest: %d %s", a.status, a.raw)
	}
	if m.Layers[0].Digest != sha256Digest(layer) || m.Layers[0].Size != len(layer) || m.Layers[0].MediaType != mediaTypeOCILayerGzip {
		t.Errorf("layer descriptor %+v", m.Layers[0])
	}
	a = get("/v2/team/hello/blobs/"+m.Layers[0].Digest, bearer)
	if a.status != 200 || !bytes.Equal(a.raw, layer) || a.header.Get("Docker-Content-Digest") != m.Layers[0].Digest {
		t.Errorf("layer blob: %d, %d bytes", a.status, len(a.raw))
	}
	a = get("/v2/team/hello/blobs/"+m.Config.Digest, bearer)
	var cfg struct {
		Architecture, OS string
		Config           struct{ Entrypoint []string }
		RootFS           struct {
			DiffIDs []string `json:"diff_ids"`
		}
	}
	if err := json.Unmarshal(a.raw, &cfg); a.status != 200 || err != nil {
		t.Fatalf("config: %d %s", a.status, a.raw)
	}
	if diffID, _ := layerDiffID(layer); len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != diffID || cfg.OS != "linux" || strings.Join(cfg.Config.Entrypoint, " ") != "/hello" {
		t.Errorf("config %s", a.raw)
	}
	if a := get("/v2/team/hello/blobs/sha256:"+strings.Repeat("0", 64), bearer); a.status != 404 {
		t.Errorf("unknown blob: %d", a.status)
	}

	rt := s.RegistryTokens()
	if len(rt) != 1 || rt[0].Username != "iambearer" || rt[0].IAMID != "iam-"+DefaultProfileID || rt[0].IAMTokenID != claims.JTI ||
		rt[0].GrantType != GrantTypeCRToken || strings.Join(rt[0].Scopes, " ") != "repository:team/hello:pull" {
		t.Errorf("registry tokens %+v", rt)
	}
	if st := s.Stats(); len(st.RegistryTokens) != 1 {
		t.Errorf("stats: %+v", st.RegistryTokens)
	}
	if b, _ := json.Marshal(s.Stats()); bytes.Contains(b, []byte(iamTok)) || bytes.Contains(b, []byte(tok.Token)) {
		t.Errorf("stats carry a token")
	}
	s.Reset()
	if len(s.RegistryTokens()) != 0 {
		t.Errorf("Reset kept the registry tokens")
	}
}

func TestImageLayersRejected(t *testing.T) {
	for name, layer := range map[string][]byte{
		"not gzip": []byte("plain"),
		"not tar": func() []byte {
			var b bytes.Buffer
			z := gzip.NewWriter(&b)
			z.Write([]byte("not a tar archive, but long enough to be read as a header block"))
			z.Close()
			return b.Bytes()
		}(),
	} {
		if s, err := Start(WithImageLayers("team/x", "1", nil, layer)); err == nil {
			s.Close()
			t.Errorf("%s: started", name)
		}
	}
	if s, err := Start(WithImageLayers("team/x", "1", nil)); err == nil {
		s.Close()
		t.Errorf("no layers: started")
	}
	cert, _ := selfSigned(t, "us.icr.io")
	if s, err := Start(WithTLS("0.0.0.0:0", cert)); err == nil {
		s.Close()
		t.Errorf("TLS on a non-loopback address: started")
	}
}
