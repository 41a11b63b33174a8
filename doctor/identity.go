package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

// identityTimeout bounds the whole identity check (all attempts).
const identityTimeout = 25 * time.Second

// checkIdentity obtains a token from the selected source, without any
// cache, and explains a failure from the *iam.Error's fields.
func (r *run) checkIdentity(ctx context.Context) {
	if r.id == nil {
		r.add(skipped(CheckMetadata, "", CheckSettings))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, identityTimeout)
	defer cancel()
	tok, err := r.id.Source.Token(ctx)
	if err == nil {
		r.token = tok
	}
	var ie *iam.Error
	if err != nil && !errors.As(err, &ie) {
		ie = &iam.Error{Reason: iam.ReasonInternal, Err: err, Fix: "this is a bug in the plugin; please report it with this output"}
	}
	r.idErr = ie
	if r.id.Kind == config.SourceVPCMetadata {
		r.vpcChecks(ie)
	} else {
		r.apiKeyCheck(ie)
	}
}

func errDetails(e *iam.Error) map[string]string {
	d := map[string]string{"reason": string(e.Reason)}
	if e.Endpoint != "" {
		d["endpoint"] = e.Endpoint
	}
	if e.Path != "" {
		d["path"] = e.Path
	}
	if e.Status != 0 {
		d["http_status"] = fmt.Sprint(e.Status)
	}
	if e.Code != "" {
		d["code"] = e.Code
	}
	if e.Message != "" {
		d["message"] = e.Message
	}
	if e.Attempts > 0 {
		d["attempts"] = fmt.Sprint(e.Attempts)
	}
	return d
}

// httpCause describes an HTTP error answer: "HTTP 403 trusted_profile_not_linked: …".
func httpCause(e *iam.Error) string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// noAnswer describes a failure without an HTTP answer, distinguishing a
// hang from a refused connection.
func noAnswer(e *iam.Error, what string) string {
	switch e.Reason {
	case iam.ReasonTimeout:
		cause := "no answer in time"
		if e.Err != nil {
			cause = e.Err.Error()
		}
		return what + " at " + e.Endpoint + " accepted the request but never answered (" + cause + ")"
	case iam.ReasonDeadline:
		return what + " at " + e.Endpoint + " did not answer before doctor's time ran out"
	case iam.ReasonUnreachable:
		return "cannot connect to " + what + " at " + e.Endpoint + ": " + iam.NetCause(e.Err)
	}
	return e.Cause()
}

// vpcChecks splits the VPC source's outcome in two: the metadata service
// (instance identity token) and the trusted profile (IAM token exchange).
func (r *run) vpcChecks(e *iam.Error) {
	mdURL := r.env.Config.MetadataURL
	if e == nil {
		r.add(Check{ID: CheckMetadata, Status: StatusOK, Summary: "metadata service at " + mdURL + " answered: instance identity token obtained"})
		r.add(Check{ID: CheckTrustedProfile, Status: StatusOK, Summary: r.id.Describe + ": IAM token obtained through the metadata service"})
		return
	}
	// The identity token step is PUT …/token; the exchange is …/iam_token(s).
	identityStep := e.Path == "" || strings.HasSuffix(e.Path, "/token")
	if identityStep || e.Reason == iam.ReasonConfig || e.Reason == iam.ReasonInternal {
		c := Check{ID: CheckMetadata, Status: StatusFail, Fix: e.Fix, Details: errDetails(e)}
		switch e.Reason {
		case iam.ReasonTimeout, iam.ReasonDeadline, iam.ReasonUnreachable:
			c.Summary = noAnswer(e, "the VPC metadata service")
		case iam.ReasonRejected, iam.ReasonNotSupported, iam.ReasonUnavailable, iam.ReasonRateLimited:
			c.Summary = "the metadata service refused an instance identity token (" + httpCause(e) + ")"
		default:
			c.Summary = e.Cause()
		}
		if e.Reason == iam.ReasonTimeout {
			c.Fix = "a disabled metadata service never answers: enable it with 'ibmcloud is instance-update INSTANCE --metadata-service true' (check with 'ibmcloud is instance INSTANCE'), or use --token-source api-key with --api-key-file"
		}
		r.add(c)
		r.add(skipped(CheckTrustedProfile, "", CheckMetadata))
		return
	}
	r.add(Check{ID: CheckMetadata, Status: StatusOK, Summary: "metadata service at " + mdURL + " answered: instance identity token obtained"})
	c := Check{ID: CheckTrustedProfile, Status: StatusFail, Fix: e.Fix, Details: errDetails(e)}
	p := r.env.Config.Profile()
	switch {
	case e.Reason == iam.ReasonTimeout || e.Reason == iam.ReasonUnreachable || e.Reason == iam.ReasonDeadline:
		c.Summary = noAnswer(e, "the metadata service's IAM token exchange")
	case e.Code == "trusted_profile_not_linked":
		c.Summary = p.String() + " is not linked to this instance (" + httpCause(e) + ")"
		c.Fix = "link it: 'ibmcloud iam trusted-profile-link-create " + profileArg(p) + " --name NAME --cr-type VSI --link-crn INSTANCE_CRN' (the instance's CRN: 'ibmcloud is instance INSTANCE --output JSON')"
	case e.Code == "trusted_profile_not_found":
		c.Summary = p.String() + " does not exist in the instance's account (" + httpCause(e) + ")"
		c.Fix = "check --profile-id/--profile-crn/--profile-name against 'ibmcloud iam trusted-profiles'"
	case e.Code == "trusted_profile_required":
		c.Summary = "no trusted profile was named and the instance has no default trusted profile (" + httpCause(e) + ")"
	case e.Status != 0:
		c.Summary = "the metadata service did not issue an IAM token for " + p.String() + " (" + httpCause(e) + ")"
	default:
		c.Summary = e.Cause()
	}
	r.add(c)
}

func profileArg(p iam.Profile) string {
	switch {
	case p.ID != "":
		return p.ID
	case p.CRN != "":
		return "PROFILE"
	case p.Name != "":
		return p.Name
	}
	return "PROFILE"
}

// apiKeyCheck explains the API key source's outcome.
func (r *run) apiKeyCheck(e *iam.Error) {
	iamURL := r.env.Config.EffectiveIAMURL()
	if e == nil {
		r.add(Check{ID: CheckIdentityAPIKey, Status: StatusOK, Summary: "IAM at " + iamURL + " accepted the " + r.id.Describe})
		return
	}
	c := Check{ID: CheckIdentityAPIKey, Status: StatusFail, Fix: e.Fix, Details: errDetails(e)}
	switch e.Reason {
	case iam.ReasonTimeout, iam.ReasonDeadline, iam.ReasonUnreachable:
		c.Summary = noAnswer(e, "IAM")
	case iam.ReasonRejected:
		switch e.Code {
		case "BXNIM0415E":
			c.Summary = "IAM does not know the API key (" + httpCause(e) + ")"
		case "BXNIM0416E", "BXNIM0417E":
			c.Summary = "IAM refused the API key: it or its owner is locked or disabled (" + httpCause(e) + ")"
		default:
			c.Summary = "IAM refused the API key (" + httpCause(e) + ")"
		}
	case iam.ReasonUnavailable:
		c.Summary = "IAM is failing (" + httpCause(e) + ")"
		c.Fix = "IAM is failing, not the API key: retry later and watch https://cloud.ibm.com/status; check for a proxy answering in IAM's stead"
	case iam.ReasonRateLimited:
		c.Summary = "IAM rate-limited the token request (" + httpCause(e) + ")"
	case iam.ReasonNotSupported:
		c.Summary = "IAM URL " + iamURL + " does not serve the token API (" + httpCause(e) + ")"
	default:
		c.Summary = e.Cause()
	}
	r.add(c)
}

// claims are the fields of an IAM access token doctor shows.
type claims struct {
	IAMID   string `json:"iam_id"`
	ID      string `json:"id"`
	Sub     string `json:"sub"`
	SubType string `json:"sub_type"`
	Name    string `json:"name"`
	Account struct {
		BSS string `json:"bss"`
	} `json:"account"`
	IssuedAt  int64  `json:"iat"`
	Expiry    int64  `json:"exp"`
	GrantType string `json:"grant_type"`
	Authn     *struct {
		Sub     string `json:"sub"`
		SubType string `json:"sub_type"`
		Name    string `json:"name"`
	} `json:"authn"`
}

// checkToken describes the token: who it is and when it expires.
func (r *run) checkToken() {
	if r.token.AccessToken == "" {
		prev := CheckIdentityAPIKey
		if r.id == nil {
			prev = CheckSettings
		} else if r.id.Kind == config.SourceVPCMetadata {
			prev = CheckTrustedProfile
		}
		r.add(skipped(CheckToken, "", prev))
		return
	}
	now := r.env.Now()
	left := r.token.Expiry.Sub(now).Round(time.Second)
	d := map[string]string{
		"expires_at": r.token.Expiry.UTC().Format(time.RFC3339),
		"expires_in": left.String(),
	}
	c := &claims{}
	if err := iam.DecodeClaims(r.token.AccessToken, c); err != nil {
		r.add(Check{ID: CheckToken, Status: StatusWarn, Details: d,
			Summary: "a token was obtained (expires in " + left.String() + ") but its payload cannot be read: " + err.Error(),
			Fix:     "registries reject tokens that are not IAM JWTs; check that --iam-url points at IAM and no proxy rewrites its answers"})
		return
	}
	r.claims = c
	d["iam_id"], d["sub"], d["sub_type"], d["account"] = c.IAMID, c.Sub, c.SubType, c.Account.BSS
	if c.Name != "" {
		d["name"] = c.Name
	}
	if c.GrantType != "" {
		d["grant_type"] = c.GrantType
	}
	if c.Authn != nil && c.Authn.Sub != "" {
		d["authn"] = c.Authn.SubType + " " + c.Authn.Sub
	}
	who := c.SubType + " " + c.IAMID
	if c.Name != "" {
		who += " (" + c.Name + ")"
	}
	chk := Check{ID: CheckToken, Status: StatusOK, Details: d,
		Summary: fmt.Sprintf("IAM token for %s in account %s, expires %s (in %s)", who, c.Account.BSS, d["expires_at"], left)}
	if lt := r.token.Lifetime(); lt < 5*time.Minute {
		chk.Status = StatusWarn
		chk.Fix = "tokens this short-lived make the kubelet call the plugin very often; check the token lifetime settings of the IAM identity"
	}
	r.add(chk)
}
