package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/doctor"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// ConditionType is the Node condition the agent maintains.
const ConditionType = "ICRCredentialsReady"

// maxMessage bounds a condition's or event's message.
const maxMessage = 1024

// Health is the outcome of one round of checks.
type Health struct {
	OK bool // no check failed (warnings do not count)
	// Reason is a CamelCase code: "CredentialsReady", or the first failed
	// check's ID ("identity.trusted-profile" is IdentityTrustedProfile).
	Reason string
	// Message is the first failed check's cause and fix (or, when all
	// passed, what was checked), one line, no secret.
	Message string
	Checks  []doctor.Check // doctor's
	At      time.Time      // when the checks ran
}

// healthOf reads a doctor report.
func healthOf(rep *doctor.Report) Health {
	h := Health{OK: rep.OK, Checks: rep.Checks, Reason: "CredentialsReady"}
	for _, c := range rep.Checks {
		if c.Status == doctor.StatusFail {
			h.Reason, h.Message = reason(c.ID), c.Summary
			if c.Fix != "" {
				h.Message += ": " + c.Fix
			}
			break
		}
	}
	if h.OK {
		n := rep.Counts()
		h.Message = fmt.Sprintf("identity, token and configuration checks pass (%d ok, %d with a warning)", n[doctor.StatusOK], n[doctor.StatusWarn])
	}
	h.Message = secret.Line(h.Message, maxMessage)
	return h
}

// reason turns a check ID into a CamelCase reason: "kubelet.match-images"
// is KubeletMatchImages.
func reason(id string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(id, func(r rune) bool { return r == '.' || r == '-' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// Publisher makes a check result visible: a Node condition, and an Event
// when the result changed.
type Publisher interface {
	Publish(ctx context.Context, h Health, changed bool) error
}
