package iam

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/IBM/go-sdk-core/v5/core"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// MetadataVersions are the VPC metadata API versions go-sdk-core speaks: its
// default (/instance_identity/v1 paths) first, the /identity/v1 one second.
var MetadataVersions = []string{"2022-03-01", "2025-08-26"}

// Profile selects the trusted profile a VPC instance assumes. At most one
// field is set; none means the instance's default trusted profile.
type Profile struct {
	ID   string
	CRN  string
	Name string
}

func (p Profile) String() string {
	switch {
	case p.ID != "":
		return "trusted profile " + p.ID
	case p.CRN != "":
		return "trusted profile " + p.CRN
	case p.Name != "":
		return "trusted profile named " + p.Name
	}
	return "the instance's default trusted profile"
}

// arg is the profile as 'ibmcloud iam' commands take it.
func (p Profile) arg() string {
	switch {
	case p.ID != "":
		return p.ID
	case p.Name != "":
		return p.Name
	}
	return "PROFILE"
}

func (p Profile) key() string {
	switch {
	case p.ID != "":
		return "id:" + p.ID
	case p.CRN != "":
		return "crn:" + p.CRN
	case p.Name != "":
		return "name:" + p.Name
	}
	return "default"
}

// VPCSource obtains tokens from the VPC instance metadata service: an
// instance identity token, exchanged for an IAM token of a trusted profile.
// Safe for concurrent use.
type VPCSource struct {
	profile Profile
	opts    Options
	c       caller
}

// NewVPCSource returns a source for profile on this VPC instance.
func NewVPCSource(profile Profile, opts Options) *VPCSource {
	opts = opts.withDefaults()
	s := &VPCSource{profile: profile, opts: opts}
	s.c = caller{
		service:        "VPC metadata service",
		endpoint:       opts.MetadataURL,
		transport:      opts.MetadataTransport,
		attemptTimeout: opts.MetadataTimeout,
		maxAttempts:    opts.MaxAttempts,
		retryTimeouts:  false, // a disabled metadata service hangs: say so at once
		now:            opts.Now,
		fix:            s.fix,
		sleep:          sleepCtx,
	}
	return s
}

// Token obtains a new token through the metadata service with the configured
// API version's paths, or the other's if the service does not know them (404).
func (s *VPCSource) Token(ctx context.Context) (token.Token, error) {
	silenceSDK()
	tok, err := s.token(ctx, s.opts.MetadataVersion)
	if e, ok := errors.AsType[*Error](err); ok && e.Reason == ReasonNotSupported {
		if other := otherVersion(s.opts.MetadataVersion); other != "" {
			tok2, err2 := s.token(ctx, other)
			if e2, ok := errors.AsType[*Error](err2); !ok || e2.Reason != ReasonNotSupported {
				return tok2, err2 // the other paths exist: their answer counts
			}
		}
	}
	return tok, err
}

func (s *VPCSource) token(ctx context.Context, version string) (token.Token, error) {
	return s.c.run(ctx, "get an IAM token for "+s.profile.String(), func(client *http.Client) (*core.IamTokenServerResponse, error) {
		a, err := core.NewVpcInstanceAuthenticatorBuilder().
			SetURL(s.opts.MetadataURL).
			SetIAMProfileID(s.profile.ID).
			SetIAMProfileCRN(s.profile.CRN).
			SetIAMProfileName(s.profile.Name).
			SetServiceVersion(version).
			SetClient(client).
			Build()
		if err != nil {
			return nil, &Error{Reason: ReasonConfig, Err: err}
		}
		return a.RequestToken()
	})
}

// otherVersion is the metadata API version whose paths to try when v's are
// unknown to the service ("" is go-sdk-core's default, the first).
func otherVersion(v string) string {
	switch v {
	case "", MetadataVersions[0]:
		return MetadataVersions[1]
	case MetadataVersions[1]:
		return MetadataVersions[0]
	}
	return ""
}

// CacheKey identifies the instance identity by metadata URL and profile.
func (s *VPCSource) CacheKey() string {
	return "vpc\x00" + s.opts.MetadataURL + "\x00" + s.profile.key()
}

func (s *VPCSource) Describe() string {
	return "VPC instance identity as " + s.profile.String()
}

func (s *VPCSource) fix(e *Error) {
	identityStep := strings.HasSuffix(e.Path, "/token")
	switch {
	case identityStep:
		e.Op = "get the instance identity token"
	case e.Path != "":
		e.Op = "exchange the instance identity token for an IAM token of " + s.profile.String()
	}
	const link = "'ibmcloud iam trusted-profile-link-create %s --name NAME --cr-type VSI --link-crn INSTANCE_CRN' (the instance's CRN: 'ibmcloud is instance INSTANCE --output JSON')"
	switch e.Reason {
	case ReasonTimeout, ReasonDeadline:
		e.Fix = "is the metadata service enabled on this instance? A disabled one never answers: enable it with 'ibmcloud is instance-update INSTANCE --metadata-service true' (check with 'ibmcloud is instance INSTANCE'), or use --token-source api-key with --api-key-file"
	case ReasonUnreachable:
		e.Fix = "this does not look like an IBM Cloud VPC instance with the metadata service on; enable it ('ibmcloud is instance-update INSTANCE --metadata-service true') or use --token-source api-key with --api-key-file"
	case ReasonNotSupported:
		e.Fix = "the metadata service at " + s.opts.MetadataURL + " serves neither API version's paths (" + strings.Join(MetadataVersions, ", ") + "); check --metadata-url"
	case ReasonRejected:
		switch {
		case identityStep:
			e.Fix = "the metadata service refused an instance identity token; check --metadata-url and that the instance's metadata service is enabled"
		case e.Status == 401:
			e.Fix = "the metadata service did not accept the instance identity token it had just issued; retry, and if it persists check that --metadata-url points at the instance's own metadata service (no proxy or port forward in between)"
		case e.Code == "trusted_profile_not_found":
			e.Fix = s.profile.String() + " does not exist in the instance's account: check --profile-id/--profile-crn/--profile-name against 'ibmcloud iam trusted-profiles', then link it: " + fmt.Sprintf(link, s.profile.arg())
		case s.profile == (Profile{}):
			e.Fix = "the instance has no default trusted profile it may use: pass --profile-id, --profile-crn or --profile-name, or link a trusted profile to the instance: " + fmt.Sprintf(link, "PROFILE")
		default:
			e.Fix = "link " + s.profile.String() + " to this instance: " + fmt.Sprintf(link, s.profile.arg()) + ", or check the profile's id/name"
		}
	case ReasonConfig:
		// go-sdk-core refused its settings (config checks them first).
		e.Fix = "give at most one of --profile-id, --profile-crn, --profile-name, and --metadata-version " + strings.Join(MetadataVersions, " or ") + ", or leave it unset"
	default:
		e.Fix = fixForTransient(e)
	}
}
