package iamtest

// What a real container runtime needs from the registry: runnable images
// (layers served as blobs), TLS on a host name of the client's choosing, and
// a record of the registry tokens issued, so that a test can tell which
// identity pulled. Used by the real-node test (make e2e-node), where
// containerd pulls us.icr.io/... from the emulator.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"
)

const mediaTypeOCILayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"

// maxRegistryTokens is how many RegistryToken records a server keeps (the
// most recent ones).
const maxRegistryTokens = 256

type runnableImage struct {
	repo, tag  string
	entrypoint []string
	layers     [][]byte
}

// WithImageLayers makes the registry serve a runnable image for
// repository:tag: layers are gzip-compressed tar archives, applied in
// order, and entrypoint is the image config's Entrypoint (nil: none, the
// pod names the command). The config's platform is linux and the
// emulator's own GOARCH. Start fails if a layer is not a gzip-compressed
// tar archive.
func WithImageLayers(repository, tag string, entrypoint []string, layers ...[]byte) Option {
	return func(c *config) {
		c.runnable = append(c.runnable, runnableImage{repository, tag, entrypoint, layers})
	}
}

// WithTLS makes the server also listen on addr (a loopback address such as
// "127.0.0.1:443") over TLS with cert; Server.TLSURL is then its base URL.
// Both listeners serve the same services, counters and tokens. A registry
// challenge sent over TLS names the realm on the host the client asked for
// ("https://us.icr.io/oauth/token" when the client dialled us.icr.io), as
// ICR's does.
func WithTLS(addr string, cert tls.Certificate) Option {
	return func(c *config) { c.tlsAddr, c.tlsCert = addr, &cert }
}

// addRunnableImage registers im; its config lists the layers' diff_ids
// (the digests of the uncompressed tars).
func (s *Server) addRunnableImage(im runnableImage) error {
	if im.repo == "" || im.tag == "" {
		return fmt.Errorf("image %q: want repository and tag", im.repo+":"+im.tag)
	}
	if len(im.layers) == 0 {
		return fmt.Errorf("image %s:%s: no layers", im.repo, im.tag)
	}
	diffIDs := make([]string, 0, len(im.layers))
	descs := make([]map[string]any, 0, len(im.layers))
	blobs := map[string][]byte{}
	for i, l := range im.layers {
		diffID, err := layerDiffID(l)
		if err != nil {
			return fmt.Errorf("image %s:%s: layer %d: %v", im.repo, im.tag, i+1, err)
		}
		d := sha256Digest(l)
		diffIDs = append(diffIDs, diffID)
		descs = append(descs, map[string]any{"mediaType": mediaTypeOCILayerGzip, "digest": d, "size": len(l)})
		blobs[d] = l
	}
	imgConfig := map[string]any{
		"Env":    []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		"Labels": map[string]string{"io.icr.iamtest.image": im.repo + ":" + im.tag},
	}
	if len(im.entrypoint) > 0 {
		imgConfig["Entrypoint"] = im.entrypoint
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       imgConfig,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return err
	}
	m := &manifest{config: cfg, configDigest: sha256Digest(cfg), blobs: blobs}
	m.body, _ = json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeOCIManifest,
		"config":        map[string]any{"mediaType": mediaTypeOCIConfig, "digest": m.configDigest, "size": len(cfg)},
		"layers":        descs,
	})
	m.digest = sha256Digest(m.body)
	if s.images[im.repo] == nil {
		s.images[im.repo] = map[string]*manifest{}
	}
	s.images[im.repo][im.tag] = m
	s.images[im.repo][m.digest] = m
	return nil
}

// layerDiffID checks that l is a gzip-compressed tar archive and returns
// the digest of the uncompressed tar.
func layerDiffID(l []byte) (string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(l))
	if err != nil {
		return "", fmt.Errorf("not gzip-compressed: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return "", fmt.Errorf("gzip: %v", err)
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		if _, err := tr.Next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("not a tar archive: %v", err)
		}
	}
	return sha256Digest(raw), nil
}

// startTLS starts the TLS listener configured by WithTLS.
func (s *Server) startTLS() error {
	c := s.cfg
	if err := checkLoopback(c.tlsAddr); err != nil {
		return err
	}
	l, err := net.Listen("tcp", c.tlsAddr)
	if err != nil {
		return err
	}
	s.TLSURL = "https://" + l.Addr().String()
	s.tlsSrv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          s.srv.ErrorLog,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{*c.tlsCert}, MinVersion: tls.VersionTLS12},
	}
	go func() { _ = s.tlsSrv.Serve(tls.NewListener(l, s.tlsSrv.TLSConfig)) }()
	return nil
}

// realmBase is the base URL of the registry's token service as the client
// should reach it: over TLS, the host the client asked for (a host name
// with an optional port, nothing else), otherwise the server's URL.
func (x *exchange) realmBase() string {
	h := x.r.Host
	if x.r.TLS == nil || h == "" || strings.ContainsFunc(h, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]", r))
	}) {
		return x.s.URL
	}
	return "https://" + h
}

// RegistryToken is a registry token the registry's token service issued:
// who asked and as which IAM identity, never the credential itself.
type RegistryToken struct {
	// Username is "iambearer" (an IAM access token) or "iamapikey".
	Username string `json:"username"`
	// IAMID is the iam_id of the credential's identity, e.g.
	// "iam-Profile-<uuid>" for a trusted profile's token.
	IAMID string `json:"iam_id"`
	// IAMTokenID (iambearer only) is the jti of the IAM access token
	// presented, which names the grant it came from; GrantType is that
	// token's grant_type.
	IAMTokenID string `json:"iam_token_id,omitempty"`
	GrantType  string `json:"grant_type,omitempty"`
	// Scopes are the scopes granted, e.g. "repository:team/app:pull".
	Scopes []string `json:"scopes"`
}

func (s *Server) recordRegistryToken(t RegistryToken) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.regTokens = append(s.regTokens, t)
	if n := len(s.regTokens); n > maxRegistryTokens {
		s.regTokens = append([]RegistryToken(nil), s.regTokens[n-maxRegistryTokens:]...)
	}
}

// RegistryTokens returns the registry tokens issued since the start or the
// last Reset (the most recent 256), oldest first.
func (s *Server) RegistryTokens() []RegistryToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RegistryToken(nil), s.regTokens...)
}

// serveBlob answers a blob request with b.
func (x *exchange) serveBlob(digest string, b []byte) {
	x.w.Header().Set("Content-Type", "application/octet-stream")
	x.w.Header().Set("Docker-Content-Digest", digest)
	x.w.Header().Set("Etag", `"`+digest+`"`)
	http.ServeContent(x.w, x.r, "", time.Time{}, bytes.NewReader(b))
}
