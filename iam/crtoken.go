package iam

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/IBM/go-sdk-core/v5/core"

	"github.com/icr-credential-provider/icr-credential-provider/secret"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// GrantTypeCRToken is IAM's grant for exchanging a compute-resource token
// (here: a Kubernetes service-account token) for a trusted profile's token.
const GrantTypeCRToken = "urn:ibm:params:oauth:grant-type:cr-token"

// ServiceAccount is what a Kubernetes service-account token says about its
// subject. It is read without verifying the signature: IAM verifies it, and
// these fields only key caches and word messages.
type ServiceAccount struct {
	Namespace string
	Name      string
	UID       string
	Audience  []string
	Expiry    time.Time
}

func (s ServiceAccount) String() string { return s.Namespace + "/" + s.Name }

// DecodeClaims decodes the payload of a JWT into v without verifying its
// signature (the service that receives the token does; callers only
// describe tokens or key caches). Errors never quote the token.
func DecodeClaims(jwt string, v any) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return errors.New("its payload is not base64url")
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return errors.New("its payload is not JSON")
	}
	return nil
}

// ParseServiceAccountToken reads the claims of a projected service-account
// token. Errors never quote the token.
func ParseServiceAccountToken(saToken string) (ServiceAccount, error) {
	var c struct {
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp json.Number     `json:"exp"`
		K8s struct {
			Namespace      string `json:"namespace"`
			ServiceAccount struct {
				Name string `json:"name"`
				UID  string `json:"uid"`
			} `json:"serviceaccount"`
		} `json:"kubernetes.io"`
	}
	if err := DecodeClaims(saToken, &c); err != nil {
		return ServiceAccount{}, errors.New("the service-account token is not a Kubernetes service-account token: " + err.Error())
	}
	sa := ServiceAccount{Namespace: c.K8s.Namespace, Name: c.K8s.ServiceAccount.Name, UID: c.K8s.ServiceAccount.UID}
	// Legacy tokens carry only sub = system:serviceaccount:NS:NAME.
	if rest, ok := strings.CutPrefix(c.Sub, "system:serviceaccount:"); ok && (sa.Namespace == "" || sa.Name == "") {
		sa.Namespace, sa.Name, _ = strings.Cut(rest, ":")
	}
	if sa.Namespace == "" || sa.Name == "" {
		return ServiceAccount{}, errors.New("the token names no service account (no kubernetes.io claims): it is not a Kubernetes service-account token")
	}
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		sa.Audience = []string{one}
	} else {
		_ = json.Unmarshal(c.Aud, &sa.Audience)
	}
	exp, err := c.Exp.Int64()
	if err != nil || exp <= 0 {
		return ServiceAccount{}, errors.New("the service-account token has no expiry: the kubelet only passes bound tokens, check tokenAttributes")
	}
	sa.Expiry = time.Unix(exp, 0)
	return sa, nil
}

// CRTokenSource exchanges a pod's service-account token for the IAM token of
// a trusted profile that trusts that service account. The tokens it yields
// never outlive the service-account token. Safe for concurrent use.
type CRTokenSource struct {
	token   string
	sa      ServiceAccount
	profile Profile
	opts    Options
	c       caller
}

// NewCRTokenSource returns a source for the service-account token saToken
// and profile (ID or Name; CRN is accepted too).
func NewCRTokenSource(saToken string, profile Profile, opts Options) (*CRTokenSource, error) {
	secret.Add(saToken)
	sa, err := ParseServiceAccountToken(saToken)
	if err != nil {
		return nil, err
	}
	if profile == (Profile{}) {
		return nil, errors.New("no trusted profile given for the service account")
	}
	opts = opts.withDefaults()
	s := &CRTokenSource{token: saToken, sa: sa, profile: profile, opts: opts}
	s.c = iamCaller(opts, s.fix)
	return s, nil
}

func (s *CRTokenSource) Token(ctx context.Context) (token.Token, error) {
	if !s.opts.Now().Before(s.sa.Expiry) {
		return token.Token{}, &Error{Service: "IAM", Op: "exchange the token of service account " + s.sa.String(), Reason: ReasonConfig,
			Message: "the service-account token expired at " + s.sa.Expiry.UTC().Format(time.RFC3339),
			Fix:     "check the node's clock; the kubelet passes fresh tokens"}
	}
	tok, err := s.c.run(ctx, "exchange the token of service account "+s.sa.String()+" for "+s.profile.String(), s.exchange)
	if err != nil {
		return token.Token{}, err
	}
	if tok.Expiry.After(s.sa.Expiry) {
		tok.Expiry = s.sa.Expiry
	}
	return tok, nil
}

// exchange performs the cr-token grant itself: go-sdk-core's
// ContainerAuthenticator reads the token from a file, and this one must
// never touch the disk.
func (s *CRTokenSource) exchange(client *http.Client) (*core.IamTokenServerResponse, error) {
	form := url.Values{"grant_type": {GrantTypeCRToken}, "cr_token": {s.token}}
	switch {
	case s.profile.ID != "":
		form.Set("profile_id", s.profile.ID)
	case s.profile.Name != "":
		form.Set("profile_name", s.profile.Name)
	case s.profile.CRN != "":
		form.Set("profile_crn", s.profile.CRN)
	}
	req, err := http.NewRequest(http.MethodPost, s.opts.IAMURL+"/identity/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, &Error{Reason: ReasonConfig, Err: errors.New("invalid IAM URL")}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	// The caller judges the status and a broken-off body by what the
	// transport saw; only a 2xx's JSON is its to check.
	var out core.IamTokenServerResponse
	if body, err := io.ReadAll(resp.Body); err != nil || json.Unmarshal(body, &out) != nil {
		return nil, errors.New("the answer is not a JSON token response")
	}
	return &out, nil
}

// CacheKey keys tokens by IAM endpoint, profile, the service account's
// identity and a hash of its token, so that no service account is ever
// served a token minted for another.
func (s *CRTokenSource) CacheKey() string {
	return "crtoken\x00" + s.opts.IAMURL + "\x00" + s.profile.key() + "\x00" + s.sa.Namespace + "\x00" + s.sa.Name + "\x00" + s.sa.UID + "\x00" + secret.Fingerprint(s.token)
}

func (s *CRTokenSource) Describe() string {
	return "service account " + s.sa.String() + " as " + s.profile.String()
}

func (s *CRTokenSource) fix(e *Error) {
	switch {
	case e.Reason != ReasonRejected:
		e.Fix = fixForTransient(e)
	case e.Code == "BXNIM0398E":
		e.Fix = "add a rule to " + s.profile.String() + " that trusts service account " + s.sa.String() + " of this cluster ('ibmcloud iam trusted-profile-rule-create PROFILE --name NAME --type Profile-CR --cr-type IKS_SA|ROKS_SA --conditions claim:namespace,operator:EQUALS,value:" + s.sa.Namespace + " …'), or annotate the service account with a profile that trusts it"
	case e.Code == "BXNIM0436E":
		e.Fix = "no such trusted profile: fix the service account's annotation icr-credential-provider.github.io/trusted-profile-id or -name"
	case e.Code == "BXNIM0437E":
		e.Fix = "the token's audience is wrong: set tokenAttributes.serviceAccountTokenAudience: iam in the kubelet's credential provider config"
	case e.Code == "BXNIM0408E":
		e.Fix = "the service-account token expired: check the node's clock"
	default:
		e.Fix = "check that " + s.profile.String() + " trusts service account " + s.sa.String() + " and that IAM trusts this cluster's service-account issuer"
	}
}
