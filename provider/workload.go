package provider

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// Service-account annotations that ask for a workload identity; the kubelet
// passes those its config's tokenAttributes list.
const (
	AnnotationProfileID   = "icr-credential-provider.github.io/trusted-profile-id"
	AnnotationProfileName = "icr-credential-provider.github.io/trusted-profile-name"
)

// ServiceAccountAudience is the audience of the service-account token the
// kubelet must project for the plugin: IAM's.
const ServiceAccountAudience = "iam"

// Workload is a pod's service account asking for the token of a trusted
// profile that trusts it (exactly one of ProfileID and ProfileName is set).
type Workload struct {
	ProfileID           string
	ProfileName         string
	ServiceAccountToken string // the pod's token; a secret: never log it
}

// String names the profile asked for, never the token.
func (w Workload) String() string {
	if w.ProfileID != "" {
		return "trusted profile " + w.ProfileID
	}
	return "trusted profile named " + w.ProfileName
}

// maxAnnotationQuote bounds an annotation value quoted (escaped) in a
// message: the value comes from whoever may edit the service account.
const maxAnnotationQuote = 80

// WorkloadOf returns the workload identity a request's service account asks
// for; ok is false when it asks for none. Both annotations at once
// (ambiguous) and a value that cannot be a profile id or name are errors.
func WorkloadOf(req Request) (w Workload, ok bool, err error) {
	id := strings.TrimSpace(req.ServiceAccountAnnotations[AnnotationProfileID])
	name := strings.TrimSpace(req.ServiceAccountAnnotations[AnnotationProfileName])
	switch {
	case id != "" && name != "":
		return w, false, fmt.Errorf("the pod's service account has both %s and %s: keep exactly one", AnnotationProfileID, AnnotationProfileName)
	case id == "" && name == "":
		return w, false, nil
	}
	for key, v := range map[string]string{AnnotationProfileID: id, AnnotationProfileName: name} {
		if v != "" && (len(v) > 255 || strings.ContainsFunc(v, unicode.IsControl)) {
			return w, false, fmt.Errorf("the pod's service account annotation %s is %s, which is no trusted profile id or name: set it to the profile's id (Profile-…) or name",
				key, strconv.QuoteToASCII(secret.Cut(v, maxAnnotationQuote)))
		}
	}
	w = Workload{ProfileID: id, ProfileName: name, ServiceAccountToken: req.ServiceAccountToken}
	if req.ServiceAccountToken == "" {
		return w, false, fmt.Errorf("the pod's service account asks for %s but the kubelet passed no service-account token: add tokenAttributes (serviceAccountTokenAudience: %s) to the provider in the kubelet's credential provider config", w, ServiceAccountAudience)
	}
	return w, true, nil
}
