package iam

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

// TestDialsRestricted: with the test binaries' restriction in force, a
// source left with the default metadata address fails at once, without a
// packet sent; loopback works.
func TestDialsRestricted(t *testing.T) {
	prev := dialVet.Load()
	defer dialVet.Store(prev)
	var tried []string
	RestrictDials(func(network, addr string) error {
		if strings.HasPrefix(addr, "127.0.0.1:") {
			return nil
		}
		tried = append(tried, addr)
		return context.Canceled
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := NewVPCSource(Profile{}, Options{MaxAttempts: 1}).Token(ctx); err == nil || len(tried) != 1 || tried[0] != "169.254.169.254:80" {
		t.Fatalf("default metadata URL: err %v, dials vetted %v", err, tried)
	}
	emu := iamtest.NewServer()
	defer emu.Close()
	if _, err := NewVPCSource(Profile{}, Options{MetadataURL: emu.MetadataURL()}).Token(ctx); err != nil {
		t.Fatalf("loopback refused: %v", err)
	}
}
