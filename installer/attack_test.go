package installer

// A local attacker against install and uninstall, which run as root on
// every node: another user (uid 4242, a separate process) who can write a
// directory on the way to a file root writes, and races install's steps;
// and, for the mechanics alone, a goroutine of this process that swaps
// entries in a directory install trusts. Each test runs the attacker for
// a bounded number of install or uninstall runs and fails at the first run
// the attacker wins.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

func TestMain(m *testing.M) {
	// The test binary is also the attacker, run as another user.
	if mode := os.Getenv("ICR_TEST_ATTACKER"); mode != "" {
		os.Exit(runAttacker(mode, os.Args[1:]))
	}
	os.Exit(iam.RunLoopbackOnly(m))
}

// attacks are the attacker's loops: each runs until stop, calls ready once
// it is set up, and returns how many times it struck.
var attacks = map[string]func(args []string, ready func(), stop func() bool) (int, error){
	"swap-temp": swapTemp,
	"swap-link": swapLink,
	"swap-dir":  swapDir,
}

// attackerLimit bounds an attacker's loop whatever the test does.
const attackerLimit = 2_000_000

// swapTemp [dir payload]: every time install creates its temporary copy of
// the binary in dir (inotify), rename a copy of payload over it, so that
// install's version check runs the payload and install moves it into place.
func swapTemp(args []string, ready func(), stop func() bool) (int, error) {
	dir := args[0]
	payload, err := os.ReadFile(args[1])
	if err != nil {
		return 0, err
	}
	in, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return 0, err
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, dir, unix.IN_CREATE); err != nil {
		return 0, err
	}
	prepare := func() string {
		p := filepath.Join(dir, ".p-"+rand.Text())
		if os.WriteFile(p, payload, 0o755) != nil || os.Chmod(p, 0o755) != nil {
			return ""
		}
		return p
	}
	next := prepare()
	ready()
	buf := make([]byte, 64<<10)
	n := 0
	for i := 0; i < attackerLimit && !stop(); i++ {
		size, err := unix.Read(in, buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			unix.Poll([]unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}}, 20)
			continue
		}
		if err != nil {
			return n, err
		}
		for off := 0; off+unix.SizeofInotifyEvent <= size; {
			l := int(binary.NativeEndian.Uint32(buf[off+12:]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+l], "\x00"))
			off += unix.SizeofInotifyEvent + l
			if !strings.HasPrefix(name, "."+DefaultName+".icr-install-") {
				continue
			}
			n++
			if next != "" && unix.Rename(next, filepath.Join(dir, name)) == nil {
				next = prepare()
			}
		}
	}
	return n, nil
}

// swapLink [dir name content victim]: make dir/name a regular file
// holding content (what install would write) with a mode install wants to
// fix, and exchange it again and again with a symbolic link to victim, so
// that install finds the right content and then changes the mode of what
// is there by then.
func swapLink(args []string, ready func(), stop func() bool) (int, error) {
	dir, name, victim := args[0], args[1], args[3]
	content, err := os.ReadFile(args[2])
	if err != nil {
		return 0, err
	}
	final, link := filepath.Join(dir, name), filepath.Join(dir, ".l")
	// place puts a new file made by mk at path (atomically, over anything).
	place := func(path string, mk func(string) error) error {
		tmp := filepath.Join(dir, ".t-"+rand.Text())
		if err := mk(tmp); err != nil {
			return err
		}
		return unix.Rename(tmp, path)
	}
	regular := func(p string) error {
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return err
		}
		return os.Chmod(p, 0o644)
	}
	symlink := func(p string) error { return unix.Symlink(victim, p) }
	if err := place(final, regular); err != nil {
		return 0, err
	}
	if err := place(link, symlink); err != nil {
		return 0, err
	}
	ready()
	n := 0
	for ; n < attackerLimit && !stop(); n++ {
		unix.Renameat2(unix.AT_FDCWD, final, unix.AT_FDCWD, link, unix.RENAME_EXCHANGE)
		if n%64 != 0 {
			continue
		}
		// Install may have replaced either entry: keep one link to victim
		// and one regular file with the mode to fix.
		var a, b unix.Stat_t
		if unix.Lstat(final, &a) != nil || unix.Lstat(link, &b) != nil {
			continue
		}
		isLink := func(st unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFLNK }
		switch {
		case !isLink(a) && !isLink(b):
			place(link, symlink)
		case isLink(a) && isLink(b):
			place(link, regular)
		}
	}
	return n, nil
}

// swapDir [parent name victimDir]: exchange parent/name, a directory
// uninstall removes a file from, with a link to victimDir, again and again.
func swapDir(args []string, ready func(), stop func() bool) (int, error) {
	parent, name, victimDir := args[0], args[1], args[2]
	link := filepath.Join(parent, ".l")
	if err := unix.Symlink(victimDir, link); err != nil {
		return 0, err
	}
	ready()
	n := 0
	for ; n < attackerLimit && !stop(); n++ {
		if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(parent, name), unix.AT_FDCWD, link, unix.RENAME_EXCHANGE); err != nil {
			return n, err
		}
	}
	return n, nil
}

// runAttacker is the attacker process: it says "ready" on stdout once set
// up, and its count when SIGTERM stops it.
func runAttacker(mode string, args []string) int {
	var stopped atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() { <-sig; stopped.Store(true) }()
	n, err := attacks[mode](args, func() { fmt.Println("ready") }, stopped.Load)
	fmt.Printf("count=%d\n", n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		return 1
	}
	return 0
}

// attackBase is a directory the attacker can reach: root's, mode 0755
// (t.TempDir's parents are 0700).
func attackBase(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "icr-attack-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mkdirOwned makes a directory with mode and owner, whatever the umask.
func mkdirOwned(t *testing.T, path string, mode os.FileMode, uid int) string {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAttacker runs attack mode as uid 4242 from a copy of this test
// binary in base, and returns once it is ready; stop ends it and returns
// its count.
func startAttacker(t *testing.T, base, mode string, args ...string) (stop func() int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(base, "attacker")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = []string{"ICR_TEST_ATTACKER=" + mode}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: attackerUID, Gid: attackerUID}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	readyc := make(chan bool, 1)
	go func() { readyc <- lines.Scan() && lines.Text() == "ready" }()
	select {
	case ok := <-readyc:
		if !ok {
			cmd.Wait()
			t.Fatalf("the attacker did not start: %s", stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the attacker did not start")
	}
	done := false
	stop = func() int {
		if done {
			return 0
		}
		done = true
		cmd.Process.Signal(syscall.SIGTERM)
		rest, _ := io.ReadAll(out)
		cmd.Wait()
		var n int
		fmt.Sscanf(strings.TrimSpace(string(rest)), "count=%d", &n)
		if stderr.Len() > 0 {
			t.Logf("attacker: %s", stderr.String())
		}
		return n
	}
	t.Cleanup(func() { stop() })
	return stop
}

// goAttacker runs attack mode in a goroutine of this process (as this
// process's user, in a directory install trusts): the mechanics alone.
func goAttacker(t *testing.T, mode string, args ...string) (stop func() int) {
	t.Helper()
	var stopped atomic.Bool
	readyc := make(chan struct{})
	type result struct {
		n   int
		err error
	}
	resc := make(chan result, 1)
	go func() {
		n, err := attacks[mode](args, func() { close(readyc) }, stopped.Load)
		resc <- result{n, err}
	}()
	select {
	case <-readyc:
	case r := <-resc:
		t.Fatalf("the attacker did not start: %v", r.err)
	}
	var res *result
	stop = func() int {
		if res == nil {
			stopped.Store(true)
			r := <-resc
			res = &r
			if r.err != nil {
				t.Errorf("attacker: %v", r.err)
			}
		}
		return res.n
	}
	t.Cleanup(func() { stop() })
	return stop
}

// payloadScript passes install's version check and leaves marker behind:
// proof that install ran it.
func payloadScript(marker string) string {
	return "#!/bin/sh\ntouch " + marker + "\necho v1.0.0\n"
}

// installRuns runs Install n times with o, the executable alternating
// between srcs (so that each run writes the binary); after each run,
// check says whether the attacker won. It returns the errors of the runs.
func installRuns(t *testing.T, n int, o Options, srcs []string, check func(i int, err error)) []error {
	t.Helper()
	var errs []error
	for i := range n {
		o.Executable = srcs[i%len(srcs)]
		_, err := Install(context.Background(), o)
		check(i, err)
		errs = append(errs, err)
	}
	return errs
}

// assertRefused requires every run to have been refused by hostfile's
// rule, naming dir.
func assertRefused(t *testing.T, errs []error, dir string) {
	t.Helper()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "is not safe to write as root") || !strings.Contains(err.Error(), dir) ||
			!strings.Contains(err.Error(), "--force does not override this") {
			t.Fatalf("run %d: %v, want the refusal of %s", i, err, dir)
		}
	}
}

// Another user who can write the bin dir swaps install's temporary copy
// of the binary for a script between its creation and the version check,
// and between the check and the rename. Install must never run that
// script (as root) nor report success with it in place.
func TestAttackSwapTemporaryBinary(t *testing.T) {
	needRoot(t)
	for _, layout := range []struct {
		name string
		mode os.FileMode
		uid  int
	}{
		{"bin dir root's, mode 0777", 0o777, 0},
		{"bin dir the attacker's", 0o755, attackerUID},
	} {
		t.Run(layout.name, func(t *testing.T) {
			base := attackBase(t)
			bin := mkdirOwned(t, filepath.Join(base, "bin"), layout.mode, layout.uid)
			etc := mkdirOwned(t, filepath.Join(base, "etc"), 0o755, 0)
			marker := filepath.Join(base, "payload-ran")
			payload := writeScript(t, filepath.Join(base, "payload"), payloadScript(marker))
			srcs := []string{fakeExe(t, base, "v1.0.0"), fakeExe(t, base, "v1.1.0")}
			stop := startAttacker(t, base, "swap-temp", bin, payload)
			o := Options{BinDir: bin, ConfigPath: filepath.Join(etc, "config.yaml")}
			errs := installRuns(t, 200, o, srcs, func(i int, err error) {
				if _, e := os.Stat(marker); e == nil {
					t.Fatalf("run %d: install ran the attacker's script as root (install said: %v)", i, err)
				}
				if got, _ := os.ReadFile(filepath.Join(bin, DefaultName)); err == nil && !bytes.Equal(got, mustRead(t, srcs[i%2])) {
					t.Fatalf("run %d: install reported success with the attacker's file in place", i)
				}
			})
			t.Logf("the attacker swapped %d temporary files", stop())
			assertRefused(t, errs, bin)
			if _, err := os.Lstat(filepath.Join(etc, "config.yaml")); err == nil {
				t.Error("the config was written although the bin dir was refused")
			}
		})
	}
}

// A sticky bin dir (/tmp's kind) is allowed: others may add entries but
// not replace root's, so the same attacker gets nowhere.
func TestAttackSwapTemporaryBinaryStickyDir(t *testing.T) {
	needRoot(t)
	base := attackBase(t)
	bin := mkdirOwned(t, filepath.Join(base, "bin"), 0o777|os.ModeSticky, 0)
	etc := mkdirOwned(t, filepath.Join(base, "etc"), 0o755, 0)
	marker := filepath.Join(base, "payload-ran")
	payload := writeScript(t, filepath.Join(base, "payload"), payloadScript(marker))
	srcs := []string{fakeExe(t, base, "v1.0.0"), fakeExe(t, base, "v1.1.0")}
	stop := startAttacker(t, base, "swap-temp", bin, payload)
	o := Options{BinDir: bin, ConfigPath: filepath.Join(etc, "config.yaml")}
	errs := installRuns(t, 50, o, srcs, func(i int, err error) {
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if _, e := os.Stat(marker); e == nil {
			t.Fatalf("run %d: install ran the attacker's script", i)
		}
		if !bytes.Equal(mustRead(t, filepath.Join(bin, DefaultName)), mustRead(t, srcs[i%2])) {
			t.Fatalf("run %d: the attacker's file is in place", i)
		}
	})
	t.Logf("the attacker tried %d temporary files in %d runs", stop(), len(errs))
}

// Another user who can write the bin dir turns the binary, whose content
// is right but whose mode is not, into a link to a root-only file just
// before install fixes the mode. Install must never change that file.
func TestAttackLinkBeforeModeFix(t *testing.T) {
	needRoot(t)
	base := attackBase(t)
	bin := mkdirOwned(t, filepath.Join(base, "bin"), 0o777, 0)
	etc := mkdirOwned(t, filepath.Join(base, "etc"), 0o755, 0)
	secretDir := mkdirOwned(t, filepath.Join(base, "root-only"), 0o700, 0)
	victim := filepath.Join(secretDir, "victim")
	if err := os.WriteFile(victim, []byte("root's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := fakeExe(t, base, "v1.0.0")
	stop := startAttacker(t, base, "swap-link", bin, DefaultName, src, victim)
	o := Options{BinDir: bin, ConfigPath: filepath.Join(etc, "config.yaml")}
	errs := installRuns(t, 2000, o, []string{src}, func(i int, err error) {
		if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o600 {
			t.Fatalf("run %d: install changed %s (root only) to %v through the attacker's link", i, victim, fi.Mode().Perm())
		}
	})
	t.Logf("the attacker swapped %d times", stop())
	assertRefused(t, errs, bin)
}

// Another user who owns a directory above the bin dir swaps the bin dir
// for a link to a directory of root's while uninstall removes the binary.
// Uninstall must never remove a file there.
func TestAttackSwapBinDirDuringUninstall(t *testing.T) {
	needRoot(t)
	base := attackBase(t)
	parent := mkdirOwned(t, filepath.Join(base, "theirs"), 0o755, attackerUID)
	bin := mkdirOwned(t, filepath.Join(parent, "bin"), 0o755, 0)
	etc := mkdirOwned(t, filepath.Join(base, "etc"), 0o755, 0)
	victimDir := mkdirOwned(t, filepath.Join(base, "sbin"), 0o755, 0)
	src := fakeExe(t, base, "v1.0.0")
	content := mustRead(t, src)
	victim := filepath.Join(victimDir, DefaultName)
	if err := os.WriteFile(victim, content, 0o755); err != nil {
		t.Fatal(err)
	}
	binFd, err := os.Open(bin) // the real bin dir, wherever the attacker moves it
	if err != nil {
		t.Fatal(err)
	}
	defer binFd.Close()
	stop := startAttacker(t, base, "swap-dir", parent, "bin", victimDir)
	var errs []error
	for i := range 300 {
		if fd, err := unix.Openat(int(binFd.Fd()), DefaultName, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o755); err == nil {
			unix.Write(fd, content)
			unix.Close(fd)
		}
		r, err := PlanRemove(RemoveOptions{BinDir: bin, ConfigPath: filepath.Join(etc, "config.yaml"), Executable: src, Host: Host{Root: "/"}})
		if err == nil {
			_, err = r.Apply()
		}
		if _, e := os.Stat(victim); e != nil {
			t.Fatalf("run %d: uninstall removed %s through the attacker's link (uninstall said: %v)", i, victim, err)
		}
		errs = append(errs, err)
	}
	t.Logf("the attacker swapped %d times", stop())
	assertRefused(t, errs, parent)
}

// The mechanics alone, in a directory install trusts, against an attacker
// with this process's rights: the version check runs the file install
// wrote, through its descriptor, never what its name points to by then;
// and install never reports success with another file in place.
func TestVerifiedBinaryIsTheOneWritten(t *testing.T) {
	f := newFixture(t)
	marker := filepath.Join(t.TempDir(), "payload-ran")
	payload := writeScript(t, filepath.Join(t.TempDir(), "payload"), payloadScript(marker))
	srcs := []string{f.src, fakeExe(t, filepath.Dir(f.src), "v1.1.0")}
	stop := goAttacker(t, "swap-temp", f.bin, payload)
	replaced := 0
	installRuns(t, 300, f.opts(), srcs, func(i int, err error) {
		if _, e := os.Stat(marker); e == nil {
			t.Fatalf("run %d: the version check ran the attacker's file (install said: %v)", i, err)
		}
		if err == nil && !bytes.Equal(mustRead(t, f.binPath()), mustRead(t, srcs[i%2])) {
			t.Fatalf("run %d: install reported success with the attacker's file in place", i)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "replaced") {
				t.Fatalf("run %d: %v", i, err)
			}
			replaced++
		}
	})
	t.Logf("the attacker swapped %d temporary files; install saw %d runs' file replaced and said so", stop(), replaced)
}

// The mechanics alone: a binary whose content is right gets its mode
// through the descriptor opened without following a link, never by path;
// a link swapped in is refused, and its target left alone.
func TestModeFixNeverFollowsALink(t *testing.T) {
	f := newFixture(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("root's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(context.Background(), f.opts()); err != nil {
		t.Fatal(err)
	}
	stop := goAttacker(t, "swap-link", f.bin, DefaultName, f.src, victim)
	installRuns(t, 2000, f.opts(), []string{f.src}, func(i int, err error) {
		if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o600 {
			t.Fatalf("run %d: install changed %s to %v through a link", i, victim, fi.Mode().Perm())
		}
	})
	t.Logf("the attacker swapped %d times", stop())
}
