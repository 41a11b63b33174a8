package iamtest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"
)

// Token kinds, carried in the header's "kid" so that a token of one kind is
// never accepted where another is expected.
const (
	kidIAM      = "iamtest-iam"
	kidInstance = "iamtest-vpc-identity"
	kidRegistry = "iamtest-registry"
)

// Grant types as IAM writes them into the "grant_type" claim.
const (
	// GrantTypeAPIKey is IAM's grant type for API keys.
	GrantTypeAPIKey = "urn:ibm:params:oauth:grant-type:apikey"
	// GrantTypeCRToken is IAM's grant type for compute-resource tokens
	// (Kubernetes service-account tokens, VPC instance identity tokens).
	GrantTypeCRToken = "urn:ibm:params:oauth:grant-type:cr-token"
)

// Claims is the payload of an IAM access token minted by the emulator. The
// field set follows real IAM access tokens (as seen when decoding them):
// iam_id, id, realmid, jti, identifier, name, sub, sub_type, account.bss,
// iat, exp, iss, grant_type, scope, client_id.
type Claims struct {
	IAMID      string        `json:"iam_id"`
	ID         string        `json:"id"`
	RealmID    string        `json:"realmid"`
	JTI        string        `json:"jti"`
	Identifier string        `json:"identifier"`
	Name       string        `json:"name,omitempty"`
	Sub        string        `json:"sub"`
	SubType    string        `json:"sub_type"`
	Authn      *Authn        `json:"authn,omitempty"`
	Account    ClaimsAccount `json:"account"`
	IssuedAt   int64         `json:"iat"`
	Expiry     int64         `json:"exp"`
	Issuer     string        `json:"iss"`
	GrantType  string        `json:"grant_type"`
	Scope      string        `json:"scope"`
	ClientID   string        `json:"client_id"`
}

// Authn names the compute resource that authenticated for a trusted-profile
// token (a VPC instance or a Kubernetes service account).
type Authn struct {
	Sub     string `json:"sub"`
	IAMID   string `json:"iam_id"`
	SubType string `json:"sub_type"`
	Name    string `json:"name,omitempty"`
}

// ClaimsAccount is the "account" claim of an IAM access token.
type ClaimsAccount struct {
	Valid bool   `json:"valid"`
	BSS   string `json:"bss"`
}

// DecodeClaims decodes the payload of an IAM access token minted by an
// emulator without checking its signature. It is meant for test assertions
// (which identity, which grant: Claims.JTI is unique per grant).
func DecodeClaims(token string) (Claims, error) {
	var c Claims
	payload, err := jwtPayload(token)
	if err != nil {
		return c, err
	}
	err = json.Unmarshal(payload, &c)
	return c, err
}

// ServiceAccountClaims describes a Kubernetes service-account token (the
// compute-resource token of the cr-token grant).
type ServiceAccountClaims struct {
	// Issuer is the "iss" claim; DefaultSAIssuer if empty.
	Issuer string
	// Audience is the "aud" claim, e.g. ["iam"].
	Audience []string
	// Namespace, Name and UID identify the service account.
	Namespace, Name, UID string
	// PodName, if set, adds the kubernetes.io.pod claim.
	PodName string
	// IssuedAt defaults to one minute before Expiry.
	IssuedAt time.Time
	// Expiry is the "exp" claim.
	Expiry time.Time
}

// saPayload is the JSON form of a projected service-account token's claims.
type saPayload struct {
	Aud        []string `json:"aud"`
	Exp        int64    `json:"exp"`
	Iat        int64    `json:"iat"`
	Nbf        int64    `json:"nbf"`
	Iss        string   `json:"iss"`
	Jti        string   `json:"jti,omitempty"`
	Sub        string   `json:"sub"`
	Kubernetes struct {
		Namespace string `json:"namespace"`
		Pod       *struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"pod,omitempty"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

// Token encodes the claims as an unsigned-but-well-formed JWT (RS256
// header, random signature bytes), the shape the kubelet hands to a
// credential provider.
func (c ServiceAccountClaims) Token() string {
	var p saPayload
	p.Iss = c.Issuer
	if p.Iss == "" {
		p.Iss = DefaultSAIssuer
	}
	p.Aud = c.Audience
	if p.Aud == nil {
		p.Aud = []string{}
	}
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = c.Expiry.Add(-time.Minute)
	}
	p.Exp, p.Iat, p.Nbf = c.Expiry.Unix(), iat.Unix(), iat.Unix()
	p.Jti = randomUUID()
	p.Sub = "system:serviceaccount:" + c.Namespace + ":" + c.Name
	p.Kubernetes.Namespace = c.Namespace
	p.Kubernetes.ServiceAccount.Name = c.Name
	p.Kubernetes.ServiceAccount.UID = c.UID
	if c.PodName != "" {
		p.Kubernetes.Pod = &struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		}{c.PodName, randomUUID()}
	}
	header := map[string]string{"alg": "RS256", "kid": "iamtest-kube-apiserver"}
	sig := make([]byte, 256)
	_, _ = rand.Read(sig)
	return encodeSegment(header) + "." + encodeSegment(p) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// ServiceAccountToken builds a Kubernetes service-account token (JWT,
// unsigned but well-formed) for namespace ns, service account name with the
// given uid, audience aud and expiry exp, issued by DefaultSAIssuer.
func ServiceAccountToken(ns, name, uid, aud string, exp time.Time) string {
	return ServiceAccountClaims{Namespace: ns, Name: name, UID: uid, Audience: []string{aud}, Expiry: exp}.Token()
}

// parseSAToken decodes a service-account token's payload without verifying
// its signature (as the emulator cannot know the cluster's keys).
func parseSAToken(tok string) (*saPayload, error) {
	payload, err := jwtPayload(tok)
	if err != nil {
		return nil, err
	}
	// "aud" may be a string or an array (RFC 7519 §4.1.3).
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, err
	}
	if a, ok := raw["aud"]; ok && len(a) > 0 && a[0] == '"' {
		var s string
		_ = json.Unmarshal(a, &s)
		fixed, _ := json.Marshal([]string{s})
		raw["aud"] = fixed
		payload, _ = json.Marshal(raw)
	}
	var p saPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// signer mints and verifies the emulator's own HMAC-signed JWTs, and
// remembers every token it minted (Server.Minted).
type signer struct {
	key    []byte
	mu     sync.Mutex
	minted []string
}

func newSigner() *signer {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return &signer{key: k}
}

func (s *signer) sign(kid string, claims any) string {
	head := encodeSegment(map[string]string{"kid": kid, "alg": "HS256", "typ": "JWT"})
	body := encodeSegment(claims)
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(head + "." + body))
	tok := head + "." + body + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	s.mu.Lock()
	s.minted = append(s.minted, tok)
	s.mu.Unlock()
	return tok
}

var errBadToken = errors.New("token not minted by this emulator")

// verify checks that tok is a token of kind kid minted by this signer and
// decodes its claims into v.
func (s *signer) verify(kid, tok string, v any) error {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return errBadToken
	}
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, m.Sum(nil)) {
		return errBadToken
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return errBadToken
	}
	var h map[string]string
	if json.Unmarshal(hb, &h) != nil || h["kid"] != kid {
		return errBadToken
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return errBadToken
	}
	return json.Unmarshal(pb, v)
}

func encodeSegment(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func jwtPayload(tok string) ([]byte, error) {
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		return nil, errors.New("token is not a JWT: want 3 dot-separated segments")
	}
	seg := strings.TrimRight(parts[1], "=")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, errors.New("token payload is not base64url")
	}
	return b, nil
}

// randomUUID returns a random RFC 4122 version-4 UUID.
func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
