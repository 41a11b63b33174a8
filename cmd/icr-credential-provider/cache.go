package main

import (
	"github.com/icr-credential-provider/icr-credential-provider/cache"
	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

// newCachingSource wraps the node identity in the token cache: memory, then
// the on-disk cache shared by all invocations (dir, "" for none), then IAM.
func newCachingSource(src config.Source, dir string) iam.TokenSource {
	return cache.New(src, src.CacheKey(), cache.Options{Dir: dir})
}
