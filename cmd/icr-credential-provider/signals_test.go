package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestKubeletContextListensOnFirstWait: kubelet mode's context sets up
// signal delivery only when something waits on it; then SIGTERM cancels
// it. Before that it is its parent: deadline, error, values.
func TestKubeletContextListensOnFirstWait(t *testing.T) {
	ctx, cancel := kubeletContext(time.Hour)
	defer cancel()
	c := ctx.(*lazySignalContext)
	if _, ok := ctx.Deadline(); !ok || ctx.Err() != nil || c.armed.Load() {
		t.Fatalf("new context: deadline set %v, err %v, armed %v; want a deadline, no error, not armed", ok, ctx.Err(), c.armed.Load())
	}
	done := ctx.Done()
	if !c.armed.Load() {
		t.Fatal("Done did not arm the context")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not cancel the armed context")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("err after SIGTERM = %v, want context.Canceled", ctx.Err())
	}
	// A child context is cancelled with it.
	child, stop := context.WithCancel(ctx)
	defer stop()
	if child.Err() == nil {
		t.Error("a child of a cancelled command context is not cancelled")
	}
}

// TestKubeletContextTimeoutUnarmed: the timeout applies without any wait,
// and a context stopped before any wait stays its parent.
func TestKubeletContextTimeoutUnarmed(t *testing.T) {
	ctx, cancel := kubeletContext(time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("err after the timeout = %v, want DeadlineExceeded", ctx.Err())
	}
	cancel()
	select {
	case <-ctx.Done():
	default:
		t.Error("Done of a stopped, timed-out context is not closed")
	}
	ctx, cancel = kubeletContext(0)
	if _, ok := ctx.Deadline(); ok {
		t.Error("kubeletContext(0) has a deadline")
	}
	cancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("err after cancel = %v, want context.Canceled", ctx.Err())
	}
}

// TestCommandContext: the other commands' context has the deadline asked
// for, or none, and cancel ends it (a signal's path is run end to end by
// TestStdinTrickleAndSIGTERM and TestInstallInterrupted).
func TestCommandContext(t *testing.T) {
	ctx, cancel := commandContext(time.Hour)
	if _, ok := ctx.Deadline(); !ok {
		t.Error("commandContext(1h) has no deadline")
	}
	cancel()
	ctx, cancel = commandContext(0)
	if _, ok := ctx.Deadline(); ok {
		t.Error("commandContext(0) has a deadline")
	}
	cancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("err after cancel = %v, want context.Canceled", ctx.Err())
	}
}

// TestReadyInput: stdin is marked complete only when a read cannot block.
func TestReadyInput(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.Write([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	if got := readyInput(r); got != r {
		t.Errorf("a pipe whose writer is open is marked complete (%T)", got)
	}
	w.Close()
	if got := readyInput(r); got == r {
		t.Error("a pipe whose writer is closed is not marked complete")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "request.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := readyInput(f); got == f {
		t.Error("a regular file is not marked complete")
	}
}
