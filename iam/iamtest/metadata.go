package iamtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Metadata service paths. VERIFIED: go-sdk-core v5.25.3
// vpc_instance_authenticator.go, and the VPC docs "Updating to the
// 2025-08-26 version of the VPC Identity API".
const (
	pathMDTokenV1    = "/instance_identity/v1/token"
	pathMDIAMTokenV1 = "/instance_identity/v1/iam_token"
	pathMDTokenV2    = "/identity/v1/token"
	pathMDIAMTokenV2 = "/identity/v1/iam_tokens"
)

// Metadata service version dates.
const (
	// MetadataMinVersion is the first version date with instance identity
	// tokens (VERIFIED, VPC docs "Identity operations").
	MetadataMinVersion = "2022-03-01"
	// MetadataV2Version is the version date from which
	// /instance_identity/v1 answers 404 and /identity/v1 must be used
	// (VERIFIED, VPC Identity API change log, 26 August 2025).
	MetadataV2Version = "2025-08-26"
)

// vpcErr is one entry of a VPC error answer. Shape VERIFIED: VPC docs
// "Instance metadata API error codes": errors[] of {code, message,
// more_info, target{name,type,value}}, plus trace and status_code.
type vpcErr struct {
	Code     string     `json:"code"`
	Message  string     `json:"message"`
	MoreInfo string     `json:"more_info,omitempty"`
	Target   *vpcTarget `json:"target,omitempty"`
}

type vpcTarget struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value,omitempty"`
}

type vpcErrorBody struct {
	Errors     []vpcErr `json:"errors"`
	Trace      string   `json:"trace"`
	StatusCode int      `json:"status_code"`
}

const moreInfoIMD = "https://cloud.ibm.com/docs/vpc?topic=vpc-imd-configure-service"

func (x *exchange) vpcError(status int, e vpcErr) {
	x.writeJSON(status, vpcErrorBody{Errors: []vpcErr{e}, Trace: randomUUID(), StatusCode: status})
}

// vpcTokenResponse is the answer of both metadata token operations
// (VERIFIED: go-sdk-core's vpcTokenResponse, VPC docs examples).
type vpcTokenResponse struct {
	AccessToken *string `json:"access_token,omitempty"`
	CreatedAt   string  `json:"created_at"`
	ExpiresAt   *string `json:"expires_at,omitempty"`
	ExpiresIn   int64   `json:"expires_in"`
}

// vpcTime formats like the docs' examples ("2024-11-12T11:08:39.363Z").
func vpcTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// instanceClaims is the payload of an instance identity token.
type instanceClaims struct {
	Sub        string `json:"sub"`
	InstanceID string `json:"instance_id"`
	Account    struct {
		ID string `json:"id"`
	} `json:"account"`
	Iss string `json:"iss"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Jti string `json:"jti"`
}

// checkMetadataRequest validates method, version date and the
// Metadata-Flavor header; it reports whether the request may proceed.
func (s *Server) checkMetadataRequest(x *exchange, method string) bool {
	v2 := x.r.URL.Path == pathMDTokenV2 || x.r.URL.Path == pathMDIAMTokenV2
	if x.r.Method != method {
		x.w.Header().Set("Allow", method)
		// GUESSED code.
		x.vpcError(http.StatusMethodNotAllowed, vpcErr{Code: "method_not_allowed", Message: fmt.Sprintf("Method %s is not allowed; use %s.", sanitize(x.r.Method), method)})
		return false
	}
	// Version checks. The status codes and error codes for a missing or
	// malformed version are GUESSED (VPC APIs answer 400 with a target of
	// type "query").
	version := x.r.URL.Query().Get("version")
	if version == "" {
		x.vpcError(http.StatusBadRequest, vpcErr{Code: "missing_version", Message: "The `version` query parameter is required.",
			MoreInfo: "https://cloud.ibm.com/apidocs/vpc-metadata#api-versioning", Target: &vpcTarget{Name: "version", Type: "query"}})
		return false
	}
	vt, err := time.Parse(time.DateOnly, version)
	if err != nil {
		x.vpcError(http.StatusBadRequest, vpcErr{Code: "invalid_version", Message: "The `version` query parameter must be a date in the format `YYYY-MM-DD`.",
			MoreInfo: "https://cloud.ibm.com/apidocs/vpc-metadata#api-versioning", Target: &vpcTarget{Name: "version", Type: "query", Value: sanitize(version)}})
		return false
	}
	if version < MetadataMinVersion {
		x.vpcError(http.StatusBadRequest, vpcErr{Code: "invalid_version", Message: "The `version` query parameter must be `" + MetadataMinVersion + "` or later for this method.",
			MoreInfo: "https://cloud.ibm.com/apidocs/vpc-metadata#api-versioning", Target: &vpcTarget{Name: "version", Type: "query", Value: version}})
		return false
	}
	if vt.After(s.Now().UTC().Add(24 * time.Hour)) {
		x.vpcError(http.StatusBadRequest, vpcErr{Code: "invalid_version", Message: "The `version` query parameter must not be later than the current date.",
			MoreInfo: "https://cloud.ibm.com/apidocs/vpc-metadata#api-versioning", Target: &vpcTarget{Name: "version", Type: "query", Value: version}})
		return false
	}
	// VERIFIED: from 2025-08-26 the /instance_identity methods answer 404.
	// The error body is GUESSED.
	if (!v2 && version >= MetadataV2Version) || (v2 && s.cfg.strict && version < MetadataV2Version) ||
		(s.cfg.onlyPaths != "" && !strings.HasPrefix(x.r.URL.Path, s.cfg.onlyPaths)) {
		x.vpcError(http.StatusNotFound, vpcErr{Code: "not_found", Message: fmt.Sprintf("The requested path `%s` was not found for version `%s`.", x.r.URL.Path, version),
			MoreInfo: "https://cloud.ibm.com/docs/vpc?topic=vpc-2025-08-26-migration-metadata-identity"})
		return false
	}
	// go-sdk-core sends Metadata-Flavor: ibm on both operations; the docs'
	// curl examples send it on the token call. The error is GUESSED.
	if x.r.Header.Get("Metadata-Flavor") != "ibm" {
		x.vpcError(http.StatusBadRequest, vpcErr{Code: "missing_required_header", Message: "The `Metadata-Flavor` header is required and must be `ibm`.",
			MoreInfo: moreInfoIMD, Target: &vpcTarget{Name: "Metadata-Flavor", Type: "header", Value: sanitize(x.r.Header.Get("Metadata-Flavor"))}})
		return false
	}
	return true
}

func (x *exchange) badBody(msg string) {
	// GUESSED code.
	x.vpcError(http.StatusBadRequest, vpcErr{Code: "invalid_body", Message: msg, MoreInfo: moreInfoIMD})
}

// serveMetadataToken serves PUT /instance_identity/v1/token and
// PUT /identity/v1/token: body {"expires_in": N}, 5 <= N <= 3600, default
// 300 (VERIFIED, VPC docs).
func (s *Server) serveMetadataToken(x *exchange) {
	if !s.checkMetadataRequest(x, http.MethodPut) {
		return
	}
	var req struct {
		ExpiresIn *json.Number `json:"expires_in"`
	}
	if b := bytes.TrimSpace(x.body); len(b) > 0 {
		if err := json.Unmarshal(b, &req); err != nil {
			x.badBody("The request body is not valid JSON.")
			return
		}
	}
	expiresIn := int64(300)
	if req.ExpiresIn != nil {
		n, err := req.ExpiresIn.Int64()
		if err != nil {
			x.vpcError(http.StatusBadRequest, vpcErr{Code: "invalid_value", Message: "The `expires_in` field must be an integer.", MoreInfo: moreInfoIMD,
				Target: &vpcTarget{Name: "expires_in", Type: "field", Value: req.ExpiresIn.String()}})
			return
		}
		// VERIFIED message for the upper bound (VPC docs "Instance metadata
		// API error codes"); the lower one is written the same way.
		if n > 3600 {
			x.vpcError(http.StatusBadRequest, vpcErr{Code: "invalid_value", Message: "The `expires_in` field must not exceed `3600`.", MoreInfo: moreInfoIMD,
				Target: &vpcTarget{Name: "expires_in", Type: "field", Value: fmt.Sprint(n)}})
			return
		}
		if n < 5 {
			x.vpcError(http.StatusBadRequest, vpcErr{Code: "invalid_value", Message: "The `expires_in` field must be at least `5`.", MoreInfo: moreInfoIMD,
				Target: &vpcTarget{Name: "expires_in", Type: "field", Value: fmt.Sprint(n)}})
			return
		}
		expiresIn = n
	}
	f, faulted := s.takeFault(x.ep, FaultKind.tokenShaped)
	if faulted && f.Kind == FaultExpiresIn {
		expiresIn = int64(f.ExpiresIn)
	}
	now := s.Now()
	exp := now.Add(time.Duration(expiresIn) * time.Second)
	c := instanceClaims{Sub: s.cfg.instanceCRN, InstanceID: DefaultInstanceID, Iss: "https://api.metadata.cloud.ibm.com/identity", Iat: now.Unix(), Exp: exp.Unix(), Jti: randomUUID()}
	c.Account.ID = DefaultAccountID
	tok := s.sign.sign(kidInstance, c)
	x.writeVPCToken(tok, now, exp, expiresIn, f, faulted, nil)
}

// writeVPCToken answers a token response, applying a token-shaped fault;
// issued (if non-nil) is called before the answer is sent if it carries an
// access token.
func (x *exchange) writeVPCToken(tok string, now, exp time.Time, expiresIn int64, f Fault, faulted bool, issued func()) {
	expAt := vpcTime(exp)
	resp := vpcTokenResponse{AccessToken: &tok, CreatedAt: vpcTime(now), ExpiresAt: &expAt, ExpiresIn: expiresIn}
	if faulted {
		switch f.Kind {
		case FaultMissingAccessToken:
			resp.AccessToken = nil
		case FaultMissingExpiration:
			resp.ExpiresAt = nil
		}
	}
	if resp.AccessToken != nil && issued != nil {
		issued()
	}
	x.writeJSON(http.StatusOK, resp)
}

// serveMetadataIAMToken serves POST /instance_identity/v1/iam_token and
// POST /identity/v1/iam_tokens: Authorization: Bearer <instance identity
// token>, optional body {"trusted_profile": {"id"|"crn"|"name": …}}
// (go-sdk-core sends exactly one of them; the VPC API documents id and crn).
func (s *Server) serveMetadataIAMToken(x *exchange) {
	if !s.checkMetadataRequest(x, http.MethodPost) {
		return
	}
	// The token check's code is GUESSED ("not_authorized" is what the VPC
	// regional API uses for rejected credentials).
	scheme, tok, _ := strings.Cut(x.r.Header.Get("Authorization"), " ")
	var ic instanceClaims
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		x.vpcError(http.StatusUnauthorized, vpcErr{Code: "not_authorized", Message: "An instance identity token is required in the `Authorization` header.", MoreInfo: moreInfoIMD,
			Target: &vpcTarget{Name: "Authorization", Type: "header"}})
		return
	}
	if err := s.sign.verify(kidInstance, strings.TrimSpace(tok), &ic); err != nil {
		x.vpcError(http.StatusUnauthorized, vpcErr{Code: "not_authorized", Message: "The instance identity token is not valid.", MoreInfo: moreInfoIMD,
			Target: &vpcTarget{Name: "Authorization", Type: "header"}})
		return
	}
	if s.Now().Unix() >= ic.Exp {
		x.vpcError(http.StatusUnauthorized, vpcErr{Code: "not_authorized", Message: "The instance identity token has expired.", MoreInfo: moreInfoIMD,
			Target: &vpcTarget{Name: "Authorization", Type: "header"}})
		return
	}
	var req struct {
		TrustedProfile *struct {
			ID   string `json:"id"`
			CRN  string `json:"crn"`
			Name string `json:"name"`
		} `json:"trusted_profile"`
	}
	if b := bytes.TrimSpace(x.body); len(b) > 0 {
		if err := json.Unmarshal(b, &req); err != nil {
			x.badBody("The request body is not valid JSON.")
			return
		}
	}
	var p *Profile
	var want string
	if tp := req.TrustedProfile; tp != nil {
		n := 0
		for _, v := range []string{tp.ID, tp.CRN, tp.Name} {
			if v != "" {
				n++
				want = v
			}
		}
		if n != 1 {
			x.vpcError(http.StatusBadRequest, vpcErr{Code: "invalid_value", Message: "Exactly one of `trusted_profile.id`, `trusted_profile.crn` or `trusted_profile.name` must be given.",
				MoreInfo: moreInfoIMD, Target: &vpcTarget{Name: "trusted_profile", Type: "field"}})
			return
		}
		for i := range s.profiles {
			c := &s.profiles[i]
			if (tp.ID != "" && tp.ID == c.ID) || (tp.CRN != "" && tp.CRN == c.CRN) || (tp.Name != "" && tp.Name == c.Name) {
				p = c
				break
			}
		}
		// GUESSED status and codes for unknown and unlinked profiles.
		if p == nil {
			x.vpcError(http.StatusNotFound, vpcErr{Code: "trusted_profile_not_found", Message: fmt.Sprintf("Trusted profile `%s` could not be found.", sanitize(want)),
				MoreInfo: "https://cloud.ibm.com/docs/vpc?topic=vpc-imd-trusted-profile-metadata", Target: &vpcTarget{Name: "trusted_profile", Type: "field", Value: sanitize(want)}})
			return
		}
		if !p.LinkedToInstance {
			x.vpcError(http.StatusForbidden, vpcErr{Code: "trusted_profile_not_linked", Message: fmt.Sprintf("Trusted profile `%s` is not linked to this instance.", p.ID),
				MoreInfo: "https://cloud.ibm.com/docs/vpc?topic=vpc-imd-trusted-profile-metadata", Target: &vpcTarget{Name: "trusted_profile", Type: "field", Value: sanitize(want)}})
			return
		}
	} else {
		for i := range s.profiles {
			if s.profiles[i].InstanceDefault {
				p = &s.profiles[i]
				break
			}
		}
		if p == nil {
			// GUESSED.
			x.vpcError(http.StatusBadRequest, vpcErr{Code: "trusted_profile_required", Message: "No trusted profile was specified and the instance has no default trusted profile.",
				MoreInfo: "https://cloud.ibm.com/docs/vpc?topic=vpc-imd-trusted-profile-metadata", Target: &vpcTarget{Name: "trusted_profile", Type: "field"}})
			return
		}
	}
	f, faulted := s.takeFault(x.ep, FaultKind.tokenShaped)
	var expiresIn *int
	if faulted && f.Kind == FaultExpiresIn {
		expiresIn = &f.ExpiresIn
	}
	authn := &Authn{Sub: ic.Sub, IAMID: "crn-" + ic.Sub, SubType: "ComputeResource", Name: ic.InstanceID}
	iamTok, iat, exp := s.mint(profileSubject(*p, authn), GrantTypeCRToken, expiresIn)
	x.writeVPCToken(iamTok, iat, exp, int64(exp.Sub(iat)/time.Second), f, faulted, func() { s.grants.Add(1) })
}
