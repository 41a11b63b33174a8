package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

// stopSignals end a command early: the kubelet stops a plugin with SIGTERM.
var stopSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT}

// commandContext is signalContext, and when timeout is positive also
// cancelled after timeout: the context of the commands other than kubelet
// mode, install and uninstall.
func commandContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signalContext()
	if timeout <= 0 {
		return ctx, stop
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancel(); stop() }
}

// signalContext is cancelled on SIGTERM or SIGINT, with an interruptedBy
// cause naming the signal; after cancel, signals act as by default again.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, stopSignals...)
	go func() {
		select {
		case s := <-ch:
			cancel(interruptedBy(s.(syscall.Signal)))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel(nil) }
}

// interruptedBy is the cause of a context cancelled by a signal.
type interruptedBy syscall.Signal

func (i interruptedBy) Error() string { return unix.SignalName(syscall.Signal(i)) }

// Is makes it a cancellation, as signal.NotifyContext's cause is.
func (interruptedBy) Is(target error) bool { return target == context.Canceled }

// kubeletContext is commandContext for kubelet mode, except that it listens
// for the signals only once anything waits on it (calls Done, as every wait
// of kubelet mode does, directly or through net/http or a child context):
// setting up signal delivery starts the runtime's signal goroutine and
// threads, about 1 ms of a warm invocation that never waits (the request
// already in the pipe, a fresh token in the cache). Until then SIGTERM and
// SIGINT keep their default action, ending the process at once, which is
// all such an invocation needs: it has written nothing and holds no lock.
func kubeletContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	parent, cancel := context.WithCancel(context.Background())
	if timeout > 0 {
		parent, cancel = context.WithTimeout(context.Background(), timeout)
	}
	c := &lazySignalContext{Context: parent}
	return c, func() { c.stop(); cancel() }
}

// lazySignalContext is its embedded context, cancelled also by stopSignals
// once armed; Done arms it.
type lazySignalContext struct {
	context.Context // the parent: deadline, values until armed

	once     sync.Once
	armed    atomic.Bool     // notified is set: listening, or stopped before any wait
	notified context.Context // signal.NotifyContext(parent), once armed
	release  context.CancelFunc
}

func (c *lazySignalContext) Done() <-chan struct{} {
	c.once.Do(func() {
		c.notified, c.release = signal.NotifyContext(c.Context, stopSignals...)
		c.armed.Store(true)
	})
	return c.notified.Done()
}

// current is notified once armed (its Value reports the cancellation Done
// reports), else the parent: no signal can have been received.
func (c *lazySignalContext) current() context.Context {
	if c.armed.Load() {
		return c.notified
	}
	return c.Context
}

func (c *lazySignalContext) Err() error { return c.current().Err() }

func (c *lazySignalContext) Value(key any) any { return c.current().Value(key) }

// stop stops listening for the signals; a context not armed yet is then
// its parent.
func (c *lazySignalContext) stop() {
	c.once.Do(func() {
		c.notified, c.release = c.Context, func() {}
		c.armed.Store(true)
	})
	c.release()
}

// readyInput marks stdin provider.Complete when reading it cannot block: a
// regular file, or a pipe whose writing end is closed. The kubelet writes
// the request into the pipe and closes it as it starts the plugin, so by
// the time the plugin reads, it normally is; reading it then needs no
// signal handling (see kubeletContext).
func readyInput(r io.Reader) io.Reader {
	f, ok := r.(*os.File)
	if !ok {
		return r
	}
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return r
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return provider.Complete(r)
	case unix.S_IFIFO:
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 0); err == nil && n == 1 && fds[0].Revents&unix.POLLHUP != 0 {
			return provider.Complete(r)
		}
	}
	return r
}
