package iamtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

const pathRegistryToken = "/oauth/token"

// Registry media types.
const (
	mediaTypeOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeOCIConfig   = "application/vnd.oci.image.config.v1+json"
)

// registryTokenLifetime is the lifetime of registry bearer tokens (the
// Docker token spec's default).
const registryTokenLifetime = 300 * time.Second

type manifest struct {
	body, config []byte
	digest       string
	configDigest string
	// blobs are the layers of a runnable image, by digest.
	blobs map[string][]byte
}

func sha256Digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// addImage registers a one-config, no-layer OCI image for repo:tag.
func (s *Server) addImage(repo, tag string) {
	config := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","config":{"Labels":{"io.icr.iamtest.image":%q}},"rootfs":{"type":"layers","diff_ids":[]}}`, repo+":"+tag)
	m := &manifest{config: config, configDigest: sha256Digest(config)}
	m.body, _ = json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeOCIManifest,
		"config":        map[string]any{"mediaType": mediaTypeOCIConfig, "digest": m.configDigest, "size": len(config)},
		"layers":        []any{},
	})
	m.digest = sha256Digest(m.body)
	if s.images[repo] == nil {
		s.images[repo] = map[string]*manifest{}
	}
	s.images[repo][tag] = m
	s.images[repo][m.digest] = m
}

// registryError answers with the Docker distribution error shape
// {"errors":[{"code","message","detail"}]}.
func (x *exchange) registryError(status int, code, msg string) {
	x.registryErrorDetail(status, code, msg, nil)
}

func (x *exchange) registryErrorDetail(status int, code, msg string, detail any) {
	type entry struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail"`
	}
	x.w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	x.writeJSON(status, map[string][]entry{"errors": {{code, msg, detail}}})
}

type registryAccess struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

type registryClaims struct {
	Iss    string           `json:"iss"`
	Sub    string           `json:"sub"`
	Aud    string           `json:"aud"`
	Exp    int64            `json:"exp"`
	Nbf    int64            `json:"nbf"`
	Iat    int64            `json:"iat"`
	Jti    string           `json:"jti"`
	Access []registryAccess `json:"access"`
}

func (c registryClaims) allows(repo, action string) bool {
	for _, a := range c.Access {
		if a.Type == "repository" && a.Name == repo && slices.Contains(a.Actions, action) {
			return true
		}
	}
	return false
}

// pullAllowed applies the AllowPull rules.
func (s *Server) pullAllowed(iamID, repo string) bool {
	if len(s.cfg.pullRules) == 0 {
		return true
	}
	ns, _, _ := strings.Cut(repo, "/")
	for _, r := range s.cfg.pullRules {
		if (r.iamID == "*" || r.iamID == iamID) && (r.namespace == "*" || r.namespace == ns) {
			return true
		}
	}
	return false
}

// challenge sets the WWW-Authenticate header. ICR's challenge (VERIFIED in
// public client code): realm "https://<host>/oauth/token", service
// "registry"; ICR has been seen sending the values unquoted, the emulator
// quotes them as RFC 7235 and the Docker token spec show.
func (x *exchange) challenge(scope, errCode string) {
	h := fmt.Sprintf(`Bearer realm="%s%s",service="registry"`, x.realmBase(), pathRegistryToken)
	if scope != "" {
		h += fmt.Sprintf(`,scope="%s"`, scope)
	}
	if errCode != "" {
		h += fmt.Sprintf(`,error="%s"`, errCode)
	}
	x.w.Header().Set("WWW-Authenticate", h)
}

// bearer verifies the registry bearer token of the request, if any.
func (s *Server) bearer(x *exchange) (c registryClaims, present, ok bool) {
	scheme, tok, _ := strings.Cut(x.r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return c, false, false
	}
	if err := s.sign.verify(kidRegistry, strings.TrimSpace(tok), &c); err != nil {
		return c, true, false
	}
	return c, true, s.Now().Unix() < c.Exp
}

func (s *Server) serveRegistry(x *exchange) {
	p := x.r.URL.Path
	switch {
	case p == pathRegistryToken:
		s.serveRegistryToken(x)
		return
	case p == "/v2" || p == "/v2/":
		if x.r.Method != http.MethodGet && x.r.Method != http.MethodHead {
			x.registryError(http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.")
			return
		}
		_, present, ok := s.bearer(x)
		if !ok {
			errCode := ""
			if present {
				errCode = "invalid_token"
			}
			x.challenge("", errCode)
			x.registryError(http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
		x.w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		x.writeJSON(http.StatusOK, struct{}{})
		return
	}
	rest := strings.TrimPrefix(p, "/v2/")
	var repo, kind, ref string
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, k); i > 0 {
			repo, kind, ref = rest[:i], strings.Trim(k, "/"), rest[i+len(k):]
			break
		}
	}
	if repo == "" || ref == "" {
		x.registryError(http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
		return
	}
	if x.r.Method != http.MethodGet && x.r.Method != http.MethodHead {
		x.registryError(http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.")
		return
	}
	scope := "repository:" + repo + ":pull"
	c, present, ok := s.bearer(x)
	if !ok {
		errCode := ""
		if present {
			errCode = "invalid_token"
		}
		x.challenge(scope, errCode)
		x.registryErrorDetail(http.StatusUnauthorized, "UNAUTHORIZED", "authentication required",
			[]map[string]string{{"Type": "repository", "Class": "", "Name": repo, "Action": "pull"}})
		return
	}
	if !c.allows(repo, "pull") {
		if !s.pullAllowed(c.Sub, repo) {
			// Docker distribution's DENIED message; ICR's own wording is
			// not documented (GUESSED).
			x.registryErrorDetail(http.StatusForbidden, "DENIED", "requested access to the resource is denied", nil)
			return
		}
		x.challenge(scope, "insufficient_scope")
		x.registryErrorDetail(http.StatusUnauthorized, "UNAUTHORIZED", "authentication required",
			[]map[string]string{{"Type": "repository", "Class": "", "Name": repo, "Action": "pull"}})
		return
	}
	refs, found := s.images[repo]
	if !found {
		x.registryErrorDetail(http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry", map[string]string{"name": repo})
		return
	}
	x.w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if kind == "blobs" {
		for _, m := range refs {
			if m.configDigest == ref {
				x.w.Header().Set("Content-Type", "application/octet-stream")
				x.w.Header().Set("Docker-Content-Digest", ref)
				x.w.Header().Set("Content-Length", fmt.Sprint(len(m.config)))
				x.w.WriteHeader(http.StatusOK)
				x.w.Write(m.config)
				return
			}
			if b, ok := m.blobs[ref]; ok {
				x.serveBlob(ref, b)
				return
			}
		}
		x.registryErrorDetail(http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry", ref)
		return
	}
	m, found := refs[ref]
	if !found {
		x.registryErrorDetail(http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown", map[string]string{"Tag": ref})
		return
	}
	x.w.Header().Set("Content-Type", mediaTypeOCIManifest)
	x.w.Header().Set("Docker-Content-Digest", m.digest)
	x.w.Header().Set("Content-Length", fmt.Sprint(len(m.body)))
	x.w.Header().Set("Etag", `"`+m.digest+`"`)
	x.w.WriteHeader(http.StatusOK)
	x.w.Write(m.body)
}

// serveRegistryToken serves the registry's token service, as the Docker
// token spec describes it: GET with HTTP basic auth and query parameters
// service and scope (repeatable), or POST with a form (grant_type=password,
// username, password, service, scope). Accepted credentials: username
// "iambearer" with an unexpired IAM access token minted by this server, or
// "iamapikey" with a known API key (ICR accepts both).
func (s *Server) serveRegistryToken(x *exchange) {
	var user, pass string
	var scopes []string
	switch x.r.Method {
	case http.MethodGet:
		user, pass, _ = x.r.BasicAuth()
		scopes = x.r.URL.Query()["scope"]
	case http.MethodPost:
		form := x.form
		switch gt := form.Get("grant_type"); gt {
		case "password":
			user, pass = form.Get("username"), form.Get("password")
		case "":
			user, pass, _ = x.r.BasicAuth()
		default:
			x.writeJSON(http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type", "error_description": "grant_type " + sanitize(gt) + " is not supported"})
			return
		}
		scopes = form["scope"]
	default:
		x.registryError(http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.")
		return
	}
	unauthorized := func() {
		x.w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
		x.registryError(http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	}
	var iamID string
	var presented Claims
	switch user {
	case "iambearer":
		c, err := s.verifyIAMToken(pass)
		if err != nil {
			unauthorized()
			return
		}
		iamID, presented = c.IAMID, c
	case "iamapikey":
		id, found := s.keys[pass]
		if !found {
			unauthorized()
			return
		}
		iamID = id.IAMID
	default:
		unauthorized()
		return
	}
	now := s.Now()
	c := registryClaims{Iss: "iamtest-registry-token", Sub: iamID, Aud: "registry", Iat: now.Unix(), Nbf: now.Unix(),
		Exp: now.Add(registryTokenLifetime).Unix(), Jti: randomUUID(), Access: []registryAccess{}}
	for _, sc := range scopes {
		for _, one := range strings.Fields(sc) {
			typ, rest, _ := strings.Cut(one, ":")
			i := strings.LastIndex(rest, ":")
			if typ != "repository" || i <= 0 {
				continue
			}
			name, actions := rest[:i], strings.Split(rest[i+1:], ",")
			if slices.Contains(actions, "pull") && s.pullAllowed(iamID, name) {
				c.Access = append(c.Access, registryAccess{Type: "repository", Name: name, Actions: []string{"pull"}})
			}
		}
	}
	f, faulted := s.takeFault(x.ep, FaultKind.tokenShaped)
	expiresIn := int64(registryTokenLifetime / time.Second)
	if faulted && f.Kind == FaultExpiresIn {
		expiresIn = int64(f.ExpiresIn)
		c.Exp = now.Unix() + expiresIn
	}
	tok := s.sign.sign(kidRegistry, c)
	if !faulted || f.Kind != FaultMissingAccessToken {
		rec := RegistryToken{Username: user, IAMID: iamID, IAMTokenID: presented.JTI, GrantType: presented.GrantType, Scopes: []string{}}
		for _, a := range c.Access {
			rec.Scopes = append(rec.Scopes, a.Type+":"+a.Name+":"+strings.Join(a.Actions, ","))
		}
		s.recordRegistryToken(rec)
	}
	resp := map[string]any{"token": tok, "access_token": tok, "expires_in": expiresIn, "issued_at": now.UTC().Format(time.RFC3339)}
	if faulted {
		switch f.Kind {
		case FaultMissingAccessToken:
			delete(resp, "token")
			delete(resp, "access_token")
		case FaultMissingExpiration:
			delete(resp, "expires_in")
		}
	}
	x.writeJSON(http.StatusOK, resp)
}
