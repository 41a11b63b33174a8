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

// identityTimeout bounds the identity check, all attempts.
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
	switch {
	case r.id.Kind == config.SourceVPCMetadata:
		r.vpcChecks(ie)
	case ie == nil:
		r.add(Check{ID: CheckIdentityAPIKey, Status: StatusOK, Summary: "IAM at " + r.env.Config.EffectiveIAMURL() + " accepted the " + r.id.Describe})
	default:
		r.add(failedWith(CheckIdentityAPIKey, ie, nil))
	}
}

// vpcChecks splits the VPC source's outcome in two: the metadata service
// (instance identity token, PUT …/token) and the trusted profile (the IAM
// token exchange, …/iam_token(s)). The cause and the fix are the error's.
func (r *run) vpcChecks(e *iam.Error) {
	metadataOK := Check{ID: CheckMetadata, Status: StatusOK, Summary: "metadata service at " + r.env.Config.MetadataURL + " answered: instance identity token obtained"}
	switch {
	case e == nil:
		r.add(metadataOK)
		r.add(Check{ID: CheckTrustedProfile, Status: StatusOK, Summary: r.id.Describe + ": IAM token obtained through the metadata service"})
	case e.Path == "" || strings.HasSuffix(e.Path, "/token") || e.Reason == iam.ReasonConfig || e.Reason == iam.ReasonInternal:
		r.add(failedWith(CheckMetadata, e, nil))
		r.add(skipped(CheckTrustedProfile, "", CheckMetadata))
	default:
		r.add(metadataOK)
		r.add(failedWith(CheckTrustedProfile, e, nil))
	}
}

func setNonEmpty(d, kv map[string]string) {
	for k, v := range kv {
		if v != "" {
			d[k] = v
		}
	}
}

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
	left := r.token.Expiry.Sub(r.env.Now()).Round(time.Second)
	d := map[string]string{"expires_at": r.token.Expiry.UTC().Format(time.RFC3339), "expires_in": left.String()}
	c := &claims{}
	if err := iam.DecodeClaims(r.token.AccessToken, c); err != nil {
		r.add(Check{ID: CheckToken, Status: StatusWarn, Details: d,
			Summary: "a token was obtained (expires in " + left.String() + ") but its payload cannot be read: " + err.Error(),
			Fix:     "registries reject tokens that are not IAM JWTs; check that --iam-url points at IAM and no proxy rewrites its answers"})
		return
	}
	r.claims = c
	d["iam_id"], d["sub"], d["sub_type"], d["account"] = c.IAMID, c.Sub, c.SubType, c.Account.BSS
	setNonEmpty(d, map[string]string{"name": c.Name, "grant_type": c.GrantType})
	if c.Authn != nil && c.Authn.Sub != "" {
		d["authn"] = c.Authn.SubType + " " + c.Authn.Sub
	}
	who := c.SubType + " " + c.IAMID
	if c.Name != "" {
		who += " (" + c.Name + ")"
	}
	chk := Check{ID: CheckToken, Status: StatusOK, Details: d,
		Summary: fmt.Sprintf("IAM token for %s in account %s, expires %s (in %s)", who, c.Account.BSS, d["expires_at"], left)}
	if r.token.Lifetime() < 5*time.Minute {
		chk.Status = StatusWarn
		chk.Fix = "tokens this short-lived make the kubelet call the plugin very often; check the token lifetime settings of the IAM identity"
	}
	r.add(chk)
}
