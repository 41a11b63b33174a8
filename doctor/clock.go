package doctor

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Clock skew thresholds: a node clock this far from IAM's makes fresh
// tokens look expired (or expired ones fresh).
const (
	SkewWarn = time.Minute
	SkewFail = 5 * time.Minute
)

// checkClock compares the local clock with IAM's: the Date header of the
// identity check's error answer if there was one, else a cheap
// unauthenticated GET to IAM, else the token's iat.
func (r *run) checkClock(ctx context.Context) {
	var server, local time.Time
	var source string
	if r.idErr != nil && !r.idErr.ServerDate.IsZero() {
		server, local, source = r.idErr.ServerDate, r.env.Now(), "the Date of the "+r.idErr.Service+" answer"
	}
	if server.IsZero() {
		u := r.env.Config.EffectiveIAMURL() + "/identity/keys"
		start := r.env.Now()
		if resp, err := r.do(ctx, http.MethodGet, u, nil); err == nil {
			resp.Body.Close()
			if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
				end := r.env.Now()
				// The server stamped its Date somewhere in the round trip.
				server, local, source = d, start.Add(end.Sub(start)/2), "the Date header of IAM at "+r.env.Config.EffectiveIAMURL()
			}
		}
	}
	if server.IsZero() && r.claims != nil && r.claims.IssuedAt > 0 {
		server, local, source = time.Unix(r.claims.IssuedAt, 0), r.token.IssuedAt, "the token's issue time (iat)"
	}
	if server.IsZero() {
		r.add(Check{ID: CheckClock, Status: StatusSkip, Summary: "no answer from IAM carried a time to compare with"})
		return
	}
	// Date is truncated to the second: the server's time was, on average,
	// half a second later than it says.
	skew := server.Add(500 * time.Millisecond).Sub(local).Round(time.Second)
	abs, dir := max(skew, -skew), "behind"
	if skew < 0 {
		dir = "ahead of"
	}
	c := Check{ID: CheckClock, Status: StatusOK, Summary: fmt.Sprintf("the local clock is within %s of IAM's (from %s)", max(abs, time.Second), source),
		Details: map[string]string{"local": local.UTC().Format(time.RFC3339), "server": server.UTC().Format(time.RFC3339), "skew": skew.String(), "source": source}}
	if abs > SkewWarn {
		c.Status, c.Fix = StatusWarn, "synchronise the node's clock with NTP (chrony or systemd-timesyncd; check with 'timedatectl status')"
		c.Summary = fmt.Sprintf("the local clock is %s %s IAM's (from %s)", abs, dir, source)
		if abs > SkewFail {
			c.Status = StatusFail
			c.Summary += ": tokens will look expired or not yet valid"
		}
	}
	r.add(c)
}
