// Package token is the one seam between the parts of the plugin that need an
// IAM access token and those that obtain (iam) or keep (cache) one: a Token
// and the Source interface, in the shape of oauth2's TokenSource.
package token

import (
	"context"
	"time"
)

// RefreshMargin is how long before its expiry a token is retired: pulls that
// start just before it can run for minutes, and the kubelet keeps
// credentials for the cacheDuration it is given.
const RefreshMargin = 10 * time.Minute

// MarginFraction is the share of a token's lifetime used as its refresh
// margin when that is shorter than RefreshMargin, so that a 5-minute token
// is not stale when issued (go-sdk-core refreshes at 80 %, the same order).
const MarginFraction = 0.2

// Token is an IAM access token and the window, by the local clock, in which
// it is valid.
type Token struct {
	AccessToken string    // the bearer token; a secret: never log it
	IssuedAt    time.Time // when it was obtained
	Expiry      time.Time // when it stops being accepted
}

// Lifetime is how long the token was valid for when it was issued.
func (t Token) Lifetime() time.Duration { return t.Expiry.Sub(t.IssuedAt) }

// Margin is the token's refresh margin: RefreshMargin, or MarginFraction of
// its lifetime if that is shorter.
func (t Token) Margin() time.Duration {
	m := time.Duration(float64(t.Lifetime()) * MarginFraction)
	if m > RefreshMargin || m <= 0 {
		return RefreshMargin
	}
	return m
}

// RefreshAt is the moment from which the token should be replaced.
func (t Token) RefreshAt() time.Time { return t.Expiry.Add(-t.Margin()) }

// Fresh reports whether the token may be handed out at now without refresh.
func (t Token) Fresh(now time.Time) bool {
	return t.AccessToken != "" && now.Before(t.RefreshAt())
}

// Valid reports whether the token is still accepted at now, refresh margin
// or not. A valid but not fresh token is what stale-if-error serves.
func (t Token) Valid(now time.Time) bool {
	return t.AccessToken != "" && now.Before(t.Expiry)
}

// String never prints the secret.
func (t Token) String() string {
	return "token.Token{expiry: " + t.Expiry.UTC().Format(time.RFC3339) + "}"
}

// GoString never prints the secret either (%#v).
func (t Token) GoString() string { return t.String() }

// Source yields tokens. Implementations are safe for concurrent use and
// honour the context's deadline. Errors never contain a secret.
type Source interface {
	Token(ctx context.Context) (Token, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) (Token, error)

func (f SourceFunc) Token(ctx context.Context) (Token, error) { return f(ctx) }
