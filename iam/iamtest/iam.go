package iamtest

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

const pathIAMToken = "/identity/token"

// IAM error codes the emulator answers with. VERIFIED ones appear in real
// IAM answers quoted in public code and issues; GUESSED ones are plausible
// codes in IAM's BXNIM numbering that could not be confirmed.
const (
	// CodeAPIKeyNotFound (VERIFIED, HTTP 400): "Provided API key could
	// not be found." — e.g. github.com/IBM/python-sdk-core test fixtures,
	// watsonx-ai-java-sdk test fixtures.
	CodeAPIKeyNotFound = "BXNIM0415E"
	// CodePropertyMissing (VERIFIED, HTTP 400): "Property missing or
	// empty" — quoted in a comment of an IBM Cloud console client.
	CodePropertyMissing = "BXNIM0109E"
	// CodeProfileNotEligible (VERIFIED, HTTP 400): "Selected trusted
	// profile not eligible." with details "The given token with identifier
	// '…' is not permitted to assume the indicated trusted profile; …" —
	// confidential-containers/cloud-api-adaptor PR #991.
	CodeProfileNotEligible = "BXNIM0398E"
	// CodeUnsupportedGrantType (GUESSED, HTTP 400).
	CodeUnsupportedGrantType = "BXNIM0104E"
	// CodeTokenInvalid (GUESSED, HTTP 400): the cr_token is not a JWT.
	CodeTokenInvalid = "BXNIM0407E"
	// CodeTokenExpired (GUESSED, HTTP 400): the cr_token has expired.
	CodeTokenExpired = "BXNIM0408E"
	// CodeAudienceMismatch (GUESSED, HTTP 400): the cr_token's audience is
	// not the one IAM expects.
	CodeAudienceMismatch = "BXNIM0437E"
	// CodeProfileNotFound (GUESSED, HTTP 400): no trusted profile has the
	// given id, name or CRN.
	CodeProfileNotFound = "BXNIM0436E"
	// CodeMethodNotAllowed (GUESSED, HTTP 405).
	CodeMethodNotAllowed = "BXNIM0101E"
)

// iamErrorContext is the "context" object of IAM error answers. Shape
// VERIFIED against real answers (watsonx-ai-java-sdk fixture from 2025,
// python-sdk-core fixture): all values are strings, times look like
// "30.05.2025 15:46:38:151 UTC", elapsedTime is milliseconds as a string.
type iamErrorContext struct {
	RequestID   string `json:"requestId"`
	RequestType string `json:"requestType"`
	UserAgent   string `json:"userAgent"`
	URL         string `json:"url"`
	InstanceID  string `json:"instanceId"`
	ThreadID    string `json:"threadId"`
	Host        string `json:"host"`
	StartTime   string `json:"startTime"`
	EndTime     string `json:"endTime"`
	ElapsedTime string `json:"elapsedTime"`
	Locale      string `json:"locale"`
	ClusterName string `json:"clusterName"`
}

type iamErrorBody struct {
	Context      iamErrorContext `json:"context"`
	ErrorCode    string          `json:"errorCode"`
	ErrorMessage string          `json:"errorMessage"`
	ErrorDetails string          `json:"errorDetails,omitempty"`
}

func iamTime(t time.Time) string {
	t = t.UTC()
	return t.Format("02.01.2006 15:04:05") + fmt.Sprintf(":%03d UTC", t.Nanosecond()/1e6)
}

// iamError answers with IAM's error shape. requestType is
// "incoming.Identity_Token" as in current answers (2017-era answers said
// "incoming.OIDC_Token").
func (x *exchange) iamError(status int, code, msg, details string) {
	now := x.s.Now()
	elapsed := time.Since(x.start)
	reqID := fmt.Sprintf("%s-%s", randomHex(7), randomHex(32))
	host := "iamid-iamtest-0"
	body := iamErrorBody{
		Context: iamErrorContext{
			RequestID:   reqID,
			RequestType: "incoming.Identity_Token",
			UserAgent:   x.r.UserAgent(),
			URL:         x.s.URL,
			InstanceID:  host,
			ThreadID:    randomHex(5),
			Host:        host,
			StartTime:   iamTime(now.Add(-elapsed)),
			EndTime:     iamTime(now),
			ElapsedTime: fmt.Sprint(elapsed.Milliseconds()),
			Locale:      "en_US",
			ClusterName: "iam-id-iamtest",
		},
		ErrorCode: code, ErrorMessage: msg, ErrorDetails: details,
	}
	x.w.Header().Set("Transaction-Id", reqID)
	x.w.Header().Set("ibm-cloud-service-name", "iam-identity")
	x.writeJSON(status, body)
}

// iamTokenResponse is IAM's token answer. Field set VERIFIED against real
// answers (watsonx-ai-java-sdk fixture): access_token, refresh_token
// ("not_supported" for API keys), ims_user_id (user API keys only),
// token_type, expires_in, expiration, scope. go-sdk-core reads
// access_token, refresh_token, token_type, expires_in, expiration.
type iamTokenResponse struct {
	AccessToken  *string `json:"access_token,omitempty"`
	RefreshToken string  `json:"refresh_token"`
	IMSUserID    int64   `json:"ims_user_id,omitempty"`
	TokenType    string  `json:"token_type"`
	ExpiresIn    int64   `json:"expires_in"`
	Expiration   *int64  `json:"expiration,omitempty"`
	Scope        string  `json:"scope"`
}

// subject is who an IAM token is for.
type subject struct {
	claims Claims
	ims    int64
}

func identitySubject(id Identity) subject {
	return subject{claims: Claims{
		IAMID: id.IAMID, ID: id.IAMID, Identifier: id.ID, Name: id.Name, Sub: id.ID, SubType: id.SubType,
		Account: ClaimsAccount{Valid: true, BSS: id.AccountID},
	}, ims: id.IMSUserID}
}

func profileSubject(p Profile, authn *Authn) subject {
	return subject{claims: Claims{
		IAMID: p.IAMID, ID: p.IAMID, Identifier: p.ID, Name: p.Name, Sub: p.ID, SubType: "Profile",
		Authn: authn, Account: ClaimsAccount{Valid: true, BSS: p.AccountID},
	}}
}

// mint issues an IAM access token for sub, valid for the configured
// lifetime (or expiresIn seconds if non-nil) from now.
func (s *Server) mint(sub subject, grant string, expiresIn *int) (tok string, iat, exp time.Time) {
	iat = s.Now()
	exp = iat.Add(s.cfg.lifetime)
	if expiresIn != nil {
		exp = iat.Add(time.Duration(*expiresIn) * time.Second)
	}
	c := sub.claims
	c.RealmID = "iam"
	c.JTI = randomUUID()
	c.IssuedAt, c.Expiry = iat.Unix(), exp.Unix()
	c.Issuer = "https://iam.cloud.ibm.com/identity"
	c.GrantType = grant
	c.Scope = "ibm openid"
	c.ClientID = "default"
	return s.sign.sign(kidIAM, c), iat, exp
}

// verifyIAMToken checks that tok is an unexpired IAM access token minted by
// this server.
func (s *Server) verifyIAMToken(tok string) (Claims, error) {
	var c Claims
	if err := s.sign.verify(kidIAM, tok, &c); err != nil {
		return c, err
	}
	if s.Now().Unix() >= c.Expiry {
		return c, fmt.Errorf("token expired")
	}
	return c, nil
}

// issueIAM answers a successful IAM token request for sub, applying a
// token-shaped fault if one is installed.
func (x *exchange) issueIAM(sub subject, grant string) {
	f, faulted := x.s.takeFault(x.ep, FaultKind.tokenShaped)
	var expiresIn *int
	if faulted && f.Kind == FaultExpiresIn {
		expiresIn = &f.ExpiresIn
	}
	tok, iat, exp := x.s.mint(sub, grant, expiresIn)
	expiration := exp.Unix()
	resp := iamTokenResponse{
		AccessToken: &tok, RefreshToken: "not_supported", IMSUserID: sub.ims, TokenType: "Bearer",
		ExpiresIn: int64(exp.Sub(iat) / time.Second), Expiration: &expiration, Scope: "ibm openid",
	}
	if faulted {
		switch f.Kind {
		case FaultMissingAccessToken:
			resp.AccessToken = nil
		case FaultMissingExpiration:
			resp.Expiration = nil
		}
	}
	if resp.AccessToken != nil {
		x.s.grants.Add(1)
	}
	x.writeJSON(http.StatusOK, resp)
}

// serveIAMToken serves POST /identity/token (form-encoded, as go-sdk-core's
// IamAuthenticator and ContainerAuthenticator send it).
func (s *Server) serveIAMToken(x *exchange) {
	if x.r.Method != http.MethodPost {
		x.w.Header().Set("Allow", http.MethodPost)
		x.iamError(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "Method not allowed.", "")
		return
	}
	form := x.form
	missing := func(name string) {
		x.iamError(http.StatusBadRequest, CodePropertyMissing, "Property missing or empty",
			fmt.Sprintf("Property '%s' is missing or empty.", name))
	}
	switch grant := form.Get("grant_type"); grant {
	case "":
		missing("grant_type")
	case GrantTypeAPIKey:
		key := form.Get("apikey")
		if key == "" {
			missing("apikey")
			return
		}
		id, ok := s.keys[key]
		if !ok {
			// The real errorDetails names the key's ID; the emulator
			// never echoes a secret.
			x.iamError(http.StatusBadRequest, CodeAPIKeyNotFound, "Provided API key could not be found.",
				"BXNIM0102E: Unable to find Object. Object Type: 'ApiKey' with ID: '"+redacted+"' not found.")
			return
		}
		x.issueIAM(identitySubject(id), GrantTypeAPIKey)
	case GrantTypeCRToken:
		s.serveCRToken(x)
	default:
		x.iamError(http.StatusBadRequest, CodeUnsupportedGrantType, "Unsupported grant type.",
			fmt.Sprintf("Grant type '%s' is not supported.", sanitize(grant)))
	}
}

// serveCRToken exchanges a Kubernetes service-account token for a trusted
// profile's IAM token (grant cr-token; form fields cr_token and one or more
// of profile_id, profile_name, profile_crn, which must name the same
// profile).
func (s *Server) serveCRToken(x *exchange) {
	form := x.form
	crTok := form.Get("cr_token")
	if crTok == "" {
		x.iamError(http.StatusBadRequest, CodePropertyMissing, "Property missing or empty", "Property 'cr_token' is missing or empty.")
		return
	}
	pid, pname, pcrn := form.Get("profile_id"), form.Get("profile_name"), form.Get("profile_crn")
	if pid == "" && pname == "" && pcrn == "" {
		x.iamError(http.StatusBadRequest, CodePropertyMissing, "Property missing or empty",
			"One of the properties 'profile_id', 'profile_name' or 'profile_crn' must be given.")
		return
	}
	sa, err := parseSAToken(crTok)
	if err != nil || sa.Exp == 0 {
		x.iamError(http.StatusBadRequest, CodeTokenInvalid, "Provided compute resource token is not valid.",
			"The compute resource token could not be parsed as a JSON Web Token.")
		return
	}
	now := s.Now()
	if now.Unix() >= sa.Exp {
		x.iamError(http.StatusBadRequest, CodeTokenExpired, "Provided compute resource token is expired.",
			fmt.Sprintf("The compute resource token expired at %s.", time.Unix(sa.Exp, 0).UTC().Format(time.RFC3339)))
		return
	}
	if !slices.Contains(sa.Aud, s.cfg.audience) {
		x.iamError(http.StatusBadRequest, CodeAudienceMismatch, "Provided compute resource token has an invalid audience.",
			fmt.Sprintf("Expected audience '%s', got %s.", s.cfg.audience, sanitize(fmt.Sprintf("%q", sa.Aud))))
		return
	}
	var p *Profile
	for i := range s.profiles {
		c := &s.profiles[i]
		if (pid == "" || pid == c.ID) && (pname == "" || pname == c.Name) && (pcrn == "" || pcrn == c.CRN) {
			p = c
			break
		}
	}
	ident := fmt.Sprintf("%s:%s:%s", sa.Iss, sa.Kubernetes.Namespace, sa.Kubernetes.ServiceAccount.Name)
	if p == nil {
		x.iamError(http.StatusBadRequest, CodeProfileNotFound, "Selected trusted profile could not be found.",
			fmt.Sprintf("No trusted profile matches profile_id '%s', profile_name '%s', profile_crn '%s'.", sanitize(pid), sanitize(pname), sanitize(pcrn)))
		return
	}
	ns, name := sa.Kubernetes.Namespace, sa.Kubernetes.ServiceAccount.Name
	if ns == "" || name == "" || sa.Sub != "system:serviceaccount:"+ns+":"+name || !p.trusts(sa.Iss, ns, name) {
		x.iamError(http.StatusBadRequest, CodeProfileNotEligible, "Selected trusted profile not eligible.",
			fmt.Sprintf("The given token with identifier '%s' is not permitted to assume the indicated trusted profile; profile ID '%s'.", sanitize(ident), p.IAMID))
		return
	}
	authn := &Authn{Sub: sa.Sub, IAMID: "crn-" + sa.Sub, SubType: "ComputeResource", Name: name}
	x.issueIAM(profileSubject(*p, authn), GrantTypeCRToken)
}

// sanitize bounds client-supplied text echoed in an error.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return s
}
