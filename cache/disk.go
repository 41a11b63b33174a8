package cache

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// The disk store lives in one directory, reached only through a directory
// file descriptor opened component by component from / with O_NOFOLLOW and
// checked, so that nothing is followed out of it:
//
//	<sha256(key)>.json              the entry (entryVersion format)
//	<sha256(key)>.lock              flock(2)ed while refreshing
//	<sha256(key)>.<random>.tmp      a write in progress (flock(2)ed by its
//	                                writer), renamed over the entry
//	sweep.stamp                     the time of the last sweep

const (
	// Entry format versions: 2 added the failed-refresh record and made the
	// token optional; 1 (a token only) is still read; others are replaced.
	entryVersion   = 2
	entryVersionV1 = 1
	// maxEntrySize bounds what is read from an entry; tokens are a few KiB.
	maxEntrySize = 1 << 20
	// Lock polling backs off from minLockPoll to maxLockPoll, so that
	// waiters see a refreshed entry within a few tens of milliseconds.
	minLockPoll = time.Millisecond
	maxLockPoll = 20 * time.Millisecond
	sweepStamp  = "sweep.stamp"
)

// Identities come and go (one per service-account token), so files
// untouched for SweepAge (entries are rewritten on every refresh, tokens
// live an hour at most) are removed, at most once per SweepEvery. A lock
// file in use then may go too; that costs at most one extra token request.
const (
	SweepEvery = 10 * time.Minute
	SweepAge   = 3 * time.Hour
)

// ErrUnsafeDir is wrapped by the error about a cache directory the disk
// store will not use: reached through a symbolic link or a directory others
// may write, or not a directory of the effective user closed to others.
var ErrUnsafeDir = errors.New("unsafe token cache directory")

// entry is the JSON content of an entry file: a token, the record of a
// failed refresh (since version 2), or both.
type entry struct {
	Version         int       `json:"version"`
	KeySHA256       string    `json:"key_sha256"`
	AccessToken     string    `json:"access_token,omitempty"`
	IssuedAt        time.Time `json:"issued_at,omitzero"`
	Expiry          time.Time `json:"expiry,omitzero"`
	RefreshFailedAt time.Time `json:"refresh_failed_at,omitzero"`
	RetryNotBefore  time.Time `json:"retry_not_before,omitzero"`
	Error           string    `json:"error,omitempty"` // one line, no secret
}

// sysOps are the system calls through which the disk store creates and
// writes files; tests replace them to simulate a full or read-only disk.
type sysOps struct {
	openat func(dirfd int, path string, flags int, mode uint32) (int, error)
	write  func(fd int, p []byte) (int, error)
}

var realSys = sysOps{openat: syscall.Openat, write: syscall.Write}

// disk is the file layer's store in a checked directory.
type disk struct {
	fd   int // the directory
	dir  string
	hash string
	sys  sysOps
	log  klog.Logger
	warn func(msg string, err error) // a problem that costs the sharing (File.warn)
}

// openDisk opens (creating) and checks dir, and tidies it (see tidy); now is
// the real clock, as file times are.
func openDisk(dir, hash string, sys sysOps, log klog.Logger, now time.Time) (*disk, error) {
	fd, err := openCacheDir(dir, true)
	if err != nil {
		return nil, err
	}
	d := &disk{fd: fd, dir: dir, hash: hash, sys: sys, log: log,
		warn: func(msg string, err error) { log.V(2).Info(msg, "dir", dir, "err", err.Error()) }}
	d.tidy(now)
	return d, nil
}

func (d *disk) close() { closeFd(d.fd) }

func (d *disk) entryName() string { return d.hash + ".json" }

// CheckDir reports, for diagnostics, whether dir is usable as a cache
// directory, without creating it: nil; an error wrapping fs.ErrNotExist (the
// cache creates it on first use); or one wrapping ErrUnsafeDir or the system
// error that keeps tokens in memory only. Safe for concurrent use.
func CheckDir(dir string) error {
	fd, err := openCacheDir(dir, false)
	if err == nil {
		closeFd(fd)
	}
	return err
}

// cacheFileKind says which of this package's names name is (".json",
// ".lock" or ".tmp"); ok is false for any other name.
func cacheFileKind(name string) (kind string, ok bool) {
	const hashLen = 64
	if len(name) <= hashLen || strings.Trim(name[:hashLen], "0123456789abcdef") != "" {
		return "", false
	}
	switch rest := name[hashLen:]; {
	case rest == ".json", rest == ".lock":
		return rest, true
	case strings.HasPrefix(rest, ".") && strings.HasSuffix(rest, ".tmp"):
		return ".tmp", true
	}
	return "", false
}

// listDir lists the directory fd without moving fd's own offset.
func listDir(fd int) ([]string, error) {
	dfd, err := syscall.Openat(fd, ".", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dfd), ".") // owns dfd
	defer f.Close()
	return f.Readdirnames(-1)
}

// tidy removes temporary files no live writer holds (they hold tokens) and,
// at most once per SweepEvery, the cache files nobody has written for
// SweepAge. Best effort.
func (d *disk) tidy(now time.Time) {
	names, err := listDir(d.fd)
	if err != nil {
		return
	}
	var st unix.Stat_t
	recent := unix.Fstatat(d.fd, sweepStamp, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG &&
		now.Sub(time.Unix(st.Mtim.Unix())) < SweepEvery
	sweep := !recent && touch(d.fd, now) == nil
	removed := 0
	for _, name := range names {
		kind, ok := cacheFileKind(name)
		switch {
		case !ok:
		case kind == ".tmp":
			d.removeAbandoned(name)
		case sweep && unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && now.Sub(time.Unix(st.Mtim.Unix())) >= SweepAge:
			if syscall.Unlinkat(d.fd, name) == nil {
				removed++
			}
		}
	}
	if removed > 0 {
		d.log.V(2).Info("Swept old token cache files", "removed", removed)
	}
}

// removeAbandoned removes the temporary file name if it has no live writer:
// a writer holds its identity's lock and a flock on the file (gone if it was
// killed). Both are taken here, without waiting, and held while the file is
// removed, so that no writer that has just created its file is cut short.
func (d *disk) removeAbandoned(name string) {
	const flags = syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_NOCTTY | syscall.O_CLOEXEC
	if lock, err := syscall.Openat(d.fd, name[:64]+".lock", flags, 0); err == nil {
		defer closeFd(lock)
		if syscall.Flock(lock, syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			return // a refresh of that identity is under way
		}
	}
	switch fd, err := syscall.Openat(d.fd, name, flags, 0); {
	case errors.Is(err, syscall.ELOOP): // a symbolic link is never ours in use
	case err != nil:
		return
	default:
		defer closeFd(fd)
		if syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			return // its writer is alive
		}
	}
	if syscall.Unlinkat(d.fd, name) == nil {
		d.log.V(2).Info("Removed a temporary token cache file left by a killed writer", "file", name)
	}
}

// touch creates or updates the sweep stamp without following a symlink.
func touch(dirfd int, now time.Time) error {
	fd, err := syscall.Openat(dirfd, sweepStamp, syscall.O_CREAT|syscall.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return err
	}
	defer closeFd(fd)
	tv := syscall.NsecToTimeval(now.UnixNano())
	return syscall.Futimes(fd, []syscall.Timeval{tv, tv})
}

// openCacheDir opens dir one component at a time from /, never following a
// symbolic link, and checks every directory on the way (unsafeDir). With
// create, missing components are created 0700.
func openCacheDir(dir string, create bool) (int, error) {
	if !filepath.IsAbs(dir) {
		return -1, fmt.Errorf("%s: %w: not an absolute path", dir, ErrUnsafeDir)
	}
	fd, err := openDirAt(unix.AT_FDCWD, "/")
	if err != nil {
		return -1, fmt.Errorf("open /: %w", err)
	}
	euid := syscall.Geteuid()
	parts := strings.Split(strings.Trim(filepath.Clean(dir), "/"), "/")
	path := ""
	for i, name := range parts {
		if name == "" {
			continue
		}
		path += "/" + name
		last := i == len(parts)-1
		next, err := openDirAt(fd, name)
		if errors.Is(err, syscall.ENOENT) && create {
			if err := syscall.Mkdirat(fd, name, 0o700); err != nil && !errors.Is(err, syscall.EEXIST) {
				closeFd(fd)
				return -1, fmt.Errorf("create token cache dir %s: %w", path, err)
			}
			next, err = openDirAt(fd, name)
		}
		if err != nil {
			var st unix.Stat_t
			lerr := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
			closeFd(fd)
			switch {
			case lerr == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
				return -1, fmt.Errorf("%s: %w: %s is a symbolic link", dir, ErrUnsafeDir, path)
			case lerr == nil && last && st.Mode&unix.S_IFMT != unix.S_IFDIR:
				return -1, fmt.Errorf("%s: %w: it is not a directory", dir, ErrUnsafeDir)
			}
			return -1, fmt.Errorf("open token cache dir %s: %w", dir, err)
		}
		closeFd(fd)
		fd = next
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			closeFd(fd)
			return -1, fmt.Errorf("stat %s: %w", path, err)
		}
		if problem := unsafeDir(&st, last, euid); problem != "" {
			closeFd(fd)
			return -1, fmt.Errorf("%s: %w: %s %s", dir, ErrUnsafeDir, path, problem)
		}
	}
	return fd, nil
}

// unsafeDir says why a directory on the way to the cache is untrusted, or
// "": the cache (last) must be the effective user's, a parent root's or the
// effective user's; only a sticky parent (/tmp) may be writable by others.
func unsafeDir(st *syscall.Stat_t, last bool, euid int) string {
	switch {
	case last && int(st.Uid) != euid:
		return fmt.Sprintf("is owned by uid %d, not %d", st.Uid, euid)
	case !last && st.Uid != 0 && int(st.Uid) != euid:
		return fmt.Sprintf("is owned by uid %d, neither root nor %d", st.Uid, euid)
	case st.Mode&0o022 != 0 && (last || st.Mode&syscall.S_ISVTX == 0):
		return fmt.Sprintf("has mode %04o, writable by group or others", st.Mode&0o7777)
	}
	return ""
}

func openDirAt(dirfd int, name string) (int, error) {
	return retryEINTR(func() (int, error) {
		return syscall.Openat(dirfd, name, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	})
}

// read returns the entry's record if it can be trusted, else an empty one.
func (d *disk) read() record {
	rec, problem := d.readRecord()
	if problem != "" {
		d.log.V(2).Info("Ignoring token cache entry", "file", d.entryName(), "reason", problem)
	}
	return rec
}

// readRecord reads the entry: its record if it can be trusted, else why not
// ("" also when there is none). The reason never quotes the file's content.
func (d *disk) readRecord() (rec record, problem string) {
	// O_NONBLOCK: a FIFO planted in place of the entry must not hang us.
	fd, err := retryEINTR(func() (int, error) {
		return d.sys.openat(d.fd, d.entryName(), syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	})
	switch {
	case errors.Is(err, syscall.ENOENT):
		return record{}, ""
	case errors.Is(err, syscall.ELOOP):
		return record{}, "it is a symbolic link"
	case err != nil:
		return record{}, "cannot open it: " + err.Error()
	}
	defer closeFd(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return record{}, "cannot stat it: " + err.Error()
	}
	if problem := untrustedFile(&st); problem != "" {
		return record{}, problem
	}
	if st.Size > maxEntrySize {
		return record{}, "it is too large"
	}
	buf := make([]byte, st.Size)
	for n := 0; n < len(buf); {
		m, err := retryEINTR(func() (int, error) { return syscall.Read(fd, buf[n:]) })
		if err != nil {
			return record{}, "cannot read it: " + err.Error()
		}
		if m == 0 {
			return record{}, "it is truncated"
		}
		n += m
	}
	return parseEntry(buf, d.hash)
}

// parseEntry checks an entry's content against the key hash it must carry.
func parseEntry(buf []byte, hash string) (rec record, problem string) {
	var e entry
	if err := json.Unmarshal(buf, &e); err != nil {
		return record{}, "it is not valid JSON" // json errors may quote content
	}
	hasTok := e.AccessToken != "" || !e.Expiry.IsZero()
	hasFail := e.Version >= 2 && (!e.RefreshFailedAt.IsZero() || !e.RetryNotBefore.IsZero() || e.Error != "")
	switch {
	case e.Version != entryVersion && e.Version != entryVersionV1:
		return record{}, fmt.Sprintf("unknown format version %d", e.Version)
	case e.KeySHA256 != hash:
		return record{}, "its key hash does not match its name"
	case hasTok && (e.AccessToken == "" || e.Expiry.IsZero()), !hasTok && !hasFail:
		return record{}, "it is incomplete"
	case hasFail && (e.RefreshFailedAt.IsZero() || e.RetryNotBefore.Before(e.RefreshFailedAt)):
		return record{}, "its failed-refresh record is inconsistent"
	}
	rec.origin = FromDisk
	if hasTok {
		rec.tok = token.Token{AccessToken: e.AccessToken, IssuedAt: e.IssuedAt, Expiry: e.Expiry}
	}
	if hasFail {
		rec.fail = failure{at: e.RefreshFailedAt, retryNotBefore: e.RetryNotBefore, message: failureMessage(e.Error)}
	}
	return rec, ""
}

// untrustedFile says why a file with status st must not be trusted, or "".
func untrustedFile(st *syscall.Stat_t) string {
	switch euid := syscall.Geteuid(); {
	case st.Mode&syscall.S_IFMT != syscall.S_IFREG:
		return "it is not a regular file"
	case int(st.Uid) != euid:
		return fmt.Sprintf("it is owned by uid %d, not %d", st.Uid, euid)
	case st.Mode&0o077 != 0:
		return fmt.Sprintf("its mode %04o gives access to group or others", st.Mode&0o7777)
	case st.Nlink != 1:
		return fmt.Sprintf("it has %d hard links", st.Nlink)
	}
	return ""
}

// openLock opens (creating) the lock file without following a symbolic link
// and checks it as an entry is checked. Anything else in its place is
// removed and the open retried once.
func (d *disk) openLock() (int, error) {
	name := d.hash + ".lock"
	var lastErr error
	for range 2 {
		fd, err := retryEINTR(func() (int, error) {
			return d.sys.openat(d.fd, name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0o600)
		})
		if err != nil {
			lastErr = fmt.Errorf("open lock file %s/%s: %w", d.dir, name, err)
			if !errors.Is(err, syscall.ELOOP) {
				return -1, lastErr
			}
		} else {
			var st syscall.Stat_t
			if err := syscall.Fstat(fd, &st); err != nil {
				closeFd(fd)
				return -1, fmt.Errorf("stat lock file %s/%s: %w", d.dir, name, err)
			}
			problem := untrustedFile(&st)
			if problem == "" {
				return fd, nil
			}
			closeFd(fd)
			lastErr = fmt.Errorf("lock file %s/%s: %w: %s", d.dir, name, ErrUnsafeDir, problem)
		}
		d.log.V(2).Info("Replacing untrusted token cache lock file", "file", name)
		if err := syscall.Unlinkat(d.fd, name); err != nil && !errors.Is(err, syscall.ENOENT) {
			return -1, lastErr
		}
	}
	return -1, lastErr
}

// lock takes the cross-process lock for this key, polling until deadline.
// While it waits it re-reads the entry, and returns as soon as settles says
// the entry answers the caller. Once it holds the lock, an untrusted entry
// is removed, so that nothing stops the write that follows. If the lock
// cannot be had in time the caller refreshes without it: one extra call to
// the source is better than none.
func (d *disk) lock(ctx context.Context, deadline time.Time, settles func(record) bool) (unlock func(), latest *record) {
	fd, err := d.openLock()
	if err != nil {
		d.warn("Token cache lock unavailable; refreshing without cross-process coordination", err)
		return nil, nil
	}
	defer func() {
		if unlock == nil {
			closeFd(fd)
		}
	}()
	for poll := minLockPoll; ; poll = min(2*poll, maxLockPoll) {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			rec, problem := d.readRecord() // empty if untrusted
			if problem != "" {
				d.dropEntry(problem)
			}
			return func() { closeFd(fd) }, &rec // closing releases the flock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			d.log.V(2).Info("Could not lock the token cache; calling the token source directly", "err", err.Error())
			return nil, nil
		}
		if rec, problem := d.readRecord(); problem == "" && settles(rec) {
			return nil, &rec
		}
		wait := min(poll, time.Until(deadline))
		if wait <= 0 || ctx.Err() != nil {
			d.log.V(2).Info("Timed out waiting for another process to refresh the token; calling the token source directly")
			return nil, nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// dropEntry removes an untrusted entry: a symbolic link or other file
// itself, never its target; a directory stays (the write then fails and
// says so). Called with the lock held, so no fresh entry is lost.
func (d *disk) dropEntry(reason string) {
	d.log.V(2).Info("Replacing untrusted token cache entry", "file", d.entryName(), "reason", reason)
	if err := syscall.Unlinkat(d.fd, d.entryName()); err != nil && !errors.Is(err, syscall.ENOENT) {
		d.log.V(2).Info("Could not remove untrusted token cache entry", "file", d.entryName(), "err", err.Error())
	}
}

// write stores rec atomically: a new 0600 file in the same directory,
// flocked while it is written (so that tidy knows it is in use), synced,
// renamed over the entry (a symbolic link there is replaced, never
// followed), then the directory synced. Readers see the old entry or the
// new one, never a part.
func (d *disk) write(rec record) (err error) {
	b, err := json.Marshal(entry{Version: entryVersion, KeySHA256: d.hash,
		AccessToken: rec.tok.AccessToken, IssuedAt: rec.tok.IssuedAt, Expiry: rec.tok.Expiry,
		RefreshFailedAt: rec.fail.at, RetryNotBefore: rec.fail.retryNotBefore, Error: rec.fail.message})
	if err != nil {
		return fmt.Errorf("encode token cache entry: %w", err)
	}
	tmp := d.hash + "." + rand.Text() + ".tmp"
	fd, err := retryEINTR(func() (int, error) {
		return d.sys.openat(d.fd, tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	})
	if err != nil {
		return fmt.Errorf("create %s/%s: %w", d.dir, tmp, err)
	}
	defer func() {
		closeFd(fd)
		if err != nil {
			_ = syscall.Unlinkat(d.fd, tmp)
		}
	}()
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("lock %s/%s: %w", d.dir, tmp, err)
	}
	for p := b; len(p) > 0; {
		n, err := retryEINTR(func() (int, error) { return d.sys.write(fd, p) })
		if err == nil && n == 0 {
			err = syscall.EIO
		}
		if err != nil {
			return fmt.Errorf("write %s/%s: %w", d.dir, tmp, err)
		}
		p = p[n:]
	}
	if _, err := retryEINTR(func() (int, error) { return 0, syscall.Fsync(fd) }); err != nil {
		return fmt.Errorf("sync %s/%s: %w", d.dir, tmp, err)
	}
	if err := syscall.Renameat(d.fd, tmp, d.fd, d.entryName()); err != nil {
		return fmt.Errorf("rename %s/%s: %w", d.dir, tmp, err)
	}
	// The token is in place; a failed directory sync only risks losing it
	// in a crash, and /run does not survive one anyway.
	if _, err := retryEINTR(func() (int, error) { return 0, syscall.Fsync(d.fd) }); err != nil {
		d.log.V(2).Info("Could not sync the token cache directory", "dir", d.dir, "err", err.Error())
	}
	return nil
}

func closeFd(fd int) { _ = syscall.Close(fd) }

func retryEINTR[T any](f func() (T, error)) (T, error) {
	for {
		if v, err := f(); !errors.Is(err, syscall.EINTR) {
			return v, err
		}
	}
}
