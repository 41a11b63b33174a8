package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// ru_maxrss of a child is not the child's own peak on Linux: at execve the
// kernel folds the old address space's high-water mark into the process's
// maxrss, and Go starts children with vfork (CLONE_VM), so that old address
// space is the launching Go process's, whose RSS then becomes a floor under
// every child's ru_maxrss. peakRSS measures the child's own peak instead:
// VmHWM of its post-exec address space, read from /proc while the child is
// stopped at exit (PTRACE_O_TRACEEXIT).

// peakRSS runs bin with stdin from the file stdin and returns its VmHWM in
// KiB.
func peakRSS(bin string, args []string, stdin string) (int64, error) {
	runtime.LockOSThread() // ptrace requests must come from the tracer thread
	defer runtime.UnlockOSThread()
	in, err := os.Open(stdin)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	cmd.Stdin = in // a file: no copying goroutine, cmd.Wait is never called
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, syscall.WALL, nil); err != nil {
		return 0, err
	}
	// Stopped with SIGTRAP after execve.
	if err := syscall.PtraceSetOptions(pid, syscall.PTRACE_O_TRACEEXIT); err != nil {
		cmd.Process.Kill()
		return 0, fmt.Errorf("ptrace: %w", err)
	}
	if err := syscall.PtraceCont(pid, 0); err != nil {
		cmd.Process.Kill()
		return 0, err
	}
	var hwm int64 = -1
	for {
		if _, err := syscall.Wait4(pid, &ws, syscall.WALL, nil); err != nil {
			return 0, err
		}
		if ws.Exited() || ws.Signaled() {
			break
		}
		if !ws.Stopped() {
			continue
		}
		sig := ws.StopSignal()
		if sig == syscall.SIGTRAP {
			if ws.TrapCause() == syscall.PTRACE_EVENT_EXIT {
				hwm, err = vmHWM(pid)
				if err != nil {
					cmd.Process.Kill()
					return 0, err
				}
			}
			sig = 0
		}
		if err := syscall.PtraceCont(pid, int(sig)); err != nil {
			return 0, err
		}
	}
	if ws.ExitStatus() != 0 {
		return 0, fmt.Errorf("%s exited %d", bin, ws.ExitStatus())
	}
	if hwm < 0 {
		return 0, fmt.Errorf("no exit event seen")
	}
	return hwm, nil
}

// vmHWM reads the peak resident set size (KiB) of pid.
func vmHWM(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// selfHWM is this process's own peak RSS (KiB), the floor under children's
// ru_maxrss.
func selfHWM() int64 {
	v, _ := vmHWM(os.Getpid())
	return v
}
