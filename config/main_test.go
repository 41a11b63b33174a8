package config

import (
	"os"
	"testing"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

// TestMain fails the run if any test dials beyond loopback.
func TestMain(m *testing.M) { os.Exit(iam.RunLoopbackOnly(m)) }
