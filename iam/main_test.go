package iam

import (
	"os"
	"testing"
)

// TestMain fails the run if any test dials beyond loopback.
func TestMain(m *testing.M) { os.Exit(RunLoopbackOnly(m)) }
