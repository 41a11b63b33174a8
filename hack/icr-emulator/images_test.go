package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "emulator"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	leaf, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(leaf)
	return certFile, keyFile, pool
}

func writeLayer(t *testing.T, path string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: 2, Typeflag: tar.TypeReg})
	tw.Write([]byte("hi"))
	tw.Close()
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunTLSAndRunnableImage(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir)
	layer := filepath.Join(dir, "layer.tar.gz")
	writeLayer(t, layer)
	urlFile := filepath.Join(dir, "url")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--url-file", urlFile, "--tls-cert", certFile, "--tls-key", keyFile, "--tls-listen", "127.0.0.1:0",
			"--image-layer", "team/hello:1=" + layer, "--image-entrypoint", "team/hello:1=/hello --flag"}, pw, io.Discard)
		pw.Close()
	}()
	br := bufio.NewReader(pr)
	first, _ := br.ReadString('\n')
	second, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	tlsURL, ok := strings.CutPrefix(strings.TrimSpace(second), "ICR_EMULATOR_TLS_URL=")
	if !strings.HasPrefix(first, "ICR_EMULATOR_URL=http://127.0.0.1:") || !ok || !strings.HasPrefix(tlsURL, "https://127.0.0.1:") {
		t.Fatalf("lines %q %q", first, second)
	}
	if b, _ := os.ReadFile(urlFile); string(b) != first+second {
		t.Errorf("url file %q", b)
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(tlsURL + "/v2/team/hello/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `realm="`+tlsURL+`/oauth/token"`) {
		t.Errorf("challenge over TLS: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestRunRejectsImagesAndTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir)
	layer := filepath.Join(dir, "layer.tar.gz")
	writeLayer(t, layer)
	notGzip := filepath.Join(dir, "plain")
	os.WriteFile(notGzip, []byte("plain"), 0o644)
	for _, args := range [][]string{
		{"--tls-cert", certFile},
		{"--tls-key", keyFile},
		{"--tls-cert", certFile, "--tls-key", keyFile, "--tls-listen", "0.0.0.0:0"},
		{"--tls-cert", keyFile, "--tls-key", certFile},
		{"--image-layer", "team/hello:1"},
		{"--image-layer", "team/hello=" + layer},
		{"--image-layer", "team/hello:1=" + filepath.Join(dir, "missing")},
		{"--image-layer", "team/hello:1=" + notGzip},
		{"--image-entrypoint", "team/hello:1=/hello"},
		{"--image-layer", "team/hello:1=" + layer, "--image-entrypoint", "team/hello:1= "},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := run(ctx, args, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
		cancel()
	}
}
