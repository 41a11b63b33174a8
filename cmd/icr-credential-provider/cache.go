package main

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/icr-credential-provider/icr-credential-provider/cache"
	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

// newCachingSource wraps the node identity in the token cache: memory, then
// the on-disk cache shared by all invocations (dir, "" for none), then IAM.
func newCachingSource(src config.Source, dir string) iam.TokenSource {
	return cache.New(src, src.CacheKey(), cache.Options{Dir: dir})
}

// Workload identities come and go (one service-account token per pod), so
// their cache entries are swept: files untouched for sweepAge (entries are
// rewritten on every refresh, tokens live at most an hour) are removed, at
// most once per sweepEvery.
const (
	sweepEvery = 10 * time.Minute
	sweepAge   = 3 * time.Hour
)

func sweepCache(dir string) {
	n, err := cache.SweepIfDue(dir, sweepEvery, sweepAge, time.Now())
	if err != nil {
		klog.V(2).InfoS("Could not sweep the token cache", "err", err.Error())
	} else if n > 0 {
		klog.V(2).InfoS("Swept expired token cache files", "removed", n)
	}
}

// nodeToken returns the function that yields the node identity's token,
// resolving the identity on first use (an answer for a host that is not
// served needs no configuration at all) and recording every secret it
// handles in secrets, for the last-line redaction of fail.
func nodeToken(cfg *config.Config, e env, secrets *[]string) func(ctx context.Context) (iam.Token, error) {
	return func(ctx context.Context) (iam.Token, error) {
		sel, err := cfg.NodeSource(e.getenv, iam.Options{})
		if err != nil {
			return iam.Token{}, err
		}
		*secrets = append(*secrets, sel.Secrets...)
		for _, w := range sel.Warnings {
			klog.Warning(w)
		}
		klog.V(2).InfoS("Node identity", "source", sel.Source.Describe(), "why", sel.Why)
		tok, err := newCachingSource(sel.Source, cfg.DiskCacheDir()).Token(ctx)
		*secrets = append(*secrets, tok.AccessToken)
		return tok, err
	}
}
