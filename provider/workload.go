package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

// Service-account annotations that ask for a workload identity. The kubelet
// passes them when its config lists them in tokenAttributes'
// optionalServiceAccountAnnotationKeys (or requiredServiceAccountAnnotationKeys).
const (
	AnnotationProfileID   = "icr-credential-provider.github.io/trusted-profile-id"
	AnnotationProfileName = "icr-credential-provider.github.io/trusted-profile-name"
)

// WorkloadProfile returns the trusted profile a request's service account
// asks for. ok is false when it asks for none (the node identity answers).
// Both annotations at once is an error: ambiguous.
func WorkloadProfile(req Request) (p iam.Profile, ok bool, err error) {
	id := strings.TrimSpace(req.ServiceAccountAnnotations[AnnotationProfileID])
	name := strings.TrimSpace(req.ServiceAccountAnnotations[AnnotationProfileName])
	switch {
	case id != "" && name != "":
		return p, false, fmt.Errorf("the pod's service account has both %s and %s: keep exactly one", AnnotationProfileID, AnnotationProfileName)
	case id != "":
		p.ID = id
	case name != "":
		p.Name = name
	default:
		return p, false, nil
	}
	if req.ServiceAccountToken == "" {
		return p, false, fmt.Errorf("the pod's service account asks for %s but the kubelet passed no service-account token: add tokenAttributes (serviceAccountTokenAudience: iam) to the provider in the kubelet's credential provider config", p)
	}
	return p, true, nil
}

// Router is Credentials that answers with the workload identity when the
// pod's service account names a trusted profile, and with the node identity
// otherwise. A service account that names a profile never falls back to the
// node identity: if its exchange fails, the request fails.
type Router struct {
	// Node yields the node's token.
	Node func(ctx context.Context) (iam.Token, error)
	// Workload exchanges saToken for profile's token.
	Workload func(ctx context.Context, profile iam.Profile, saToken string) (iam.Token, error)
}

// Token implements Credentials.
func (r Router) Token(ctx context.Context, req Request) (iam.Token, error) {
	p, ok, err := WorkloadProfile(req)
	if err != nil {
		return iam.Token{}, err
	}
	if !ok {
		return r.Node(ctx)
	}
	if r.Workload == nil {
		return iam.Token{}, fmt.Errorf("the pod's service account asks for %s but workload identities are not enabled in this plugin", p)
	}
	return r.Workload(ctx, p, req.ServiceAccountToken)
}
