package cache

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

// The disk layer lives in one directory, all of it reached through a
// directory file descriptor opened with O_NOFOLLOW, so that nothing is
// followed out of it once it has been checked:
//
//	<sha256(key)>.json              the entry (entryVersion format)
//	<sha256(key)>.lock              flock(2)ed while refreshing; never removed
//	<sha256(key)>.<random>.tmp      a write in progress, renamed over the entry

// entryVersion is the format version of entry files written. Version 2
// added the record of a failed refresh (refresh_failed_at, retry_not_before,
// error) and made the token optional, for a failure with no token to keep.
// Version 1 entries (a token only) are still read; files with any other
// version are ignored and replaced.
const (
	entryVersion   = 2
	entryVersionV1 = 1
)

// maxEntrySize bounds what is read from an entry; IAM tokens are a few KiB.
const maxEntrySize = 1 << 20

// Lock polling starts short and backs off to maxLockPoll, so that waiters
// see a refreshed entry within a few tens of milliseconds.
const (
	minLockPoll = time.Millisecond
	maxLockPoll = 20 * time.Millisecond
)

// entryState is what readRecord found.
type entryState int

const (
	entryOK         entryState = iota // a trusted entry
	entryMissing                      // no entry
	entryUnreadable                   // an I/O error; the entry is left alone
	entryUntrusted                    // an entry that must be ignored and replaced
)

// ErrUnsafeDir is returned (wrapped) by CheckDir for a cache directory that
// is not a real directory owned by the effective user and closed to group
// and others for writing. The disk layer is not used with such a directory.
var ErrUnsafeDir = errors.New("unsafe token cache directory")

// entry is the JSON content of an entry file: a token, the record of a
// failed refresh, or both (a failed refresh never hides a valid token).
type entry struct {
	Version     int       `json:"version"`
	KeySHA256   string    `json:"key_sha256"`
	AccessToken string    `json:"access_token,omitempty"`
	IssuedAt    time.Time `json:"issued_at,omitzero"`
	Expiry      time.Time `json:"expiry,omitzero"`
	// Since version 2: the last refresh failed at RefreshFailedAt with
	// Error (one line, no secret), and no invocation calls the source again
	// before RetryNotBefore (see OutageBackoff and FailureBackoff).
	RefreshFailedAt time.Time `json:"refresh_failed_at,omitzero"`
	RetryNotBefore  time.Time `json:"retry_not_before,omitzero"`
	Error           string    `json:"error,omitempty"`
}

// record is a trusted entry: a token (AccessToken "" if none) and a failed
// refresh (zero if none).
type record struct {
	tok  iam.Token
	fail failure
}

// sysOps are the system calls through which the disk layer creates and
// writes files; tests replace them to simulate a full or read-only disk.
type sysOps struct {
	openat func(dirfd int, path string, flags int, mode uint32) (int, error)
	write  func(fd int, p []byte) (int, error)
}

var realSys = sysOps{openat: syscall.Openat, write: syscall.Write}

// CheckDir reports whether dir is usable as a cache directory, without
// creating it: nil if it is, an error wrapping fs.ErrNotExist if it does not
// exist yet (a Source creates it on first use), or an error wrapping
// ErrUnsafeDir or the system error that makes a Source disable its disk
// layer. It is meant for diagnostics and safe for concurrent use.
func CheckDir(dir string) error {
	fd, err := openCacheDir(dir, false)
	if err != nil {
		return err
	}
	closeFd(fd)
	return nil
}

// Clear removes every cache entry, lock and leftover temporary file from
// dir, and nothing else. A missing dir is not an error. It is safe for
// concurrent use; a Source running at the same time may refresh once more
// than it otherwise would.
func Clear(dir string) error {
	if dir == "" {
		return nil
	}
	fd, err := openDirNoFollow(dir)
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open token cache dir %s: %w", dir, err)
	}
	d := os.NewFile(uintptr(fd), dir) // owns fd from here
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("list token cache dir %s: %w", dir, err)
	}
	var errs []error
	for _, name := range names {
		if !isCacheFileName(name) {
			continue
		}
		// unlinkat removes a symbolic link itself, never its target.
		if err := syscall.Unlinkat(fd, name); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove %s/%s: %w", dir, name, err))
		}
	}
	return errors.Join(errs...)
}

// isCacheFileName reports whether name is one of the names this package
// creates.
func isCacheFileName(name string) bool {
	const hashLen = 64
	if len(name) <= hashLen || strings.Trim(name[:hashLen], "0123456789abcdef") != "" {
		return false
	}
	rest := name[hashLen:]
	return rest == ".json" || rest == ".lock" || (strings.HasPrefix(rest, ".") && strings.HasSuffix(rest, ".tmp"))
}

// openDir opens the cache directory, creating it if missing, and checks it.
// It returns -1, with one warning and the disk layer disabled for good, if
// the directory cannot be used.
func (s *Source) openDir() int {
	fd, err := openCacheDir(s.dir, true)
	if err != nil {
		s.diskOff.Store(true)
		s.diskWarning("Token cache on disk disabled; caching in memory only", err)
		return -1
	}
	return fd
}

func openDirNoFollow(dir string) (int, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// openCacheDir opens dir without following a symbolic link and checks that
// it is a directory owned by the effective user and not writable by group or
// others. With create, a missing dir is created 0700 (parents too).
func openCacheDir(dir string, create bool) (int, error) {
	fd, err := openDirNoFollow(dir)
	if errors.Is(err, syscall.ENOENT) && create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return -1, fmt.Errorf("create token cache dir: %w", err)
		}
		fd, err = openDirNoFollow(dir)
	}
	if err != nil {
		if fi, lerr := os.Lstat(dir); lerr == nil {
			if fi.Mode()&fs.ModeSymlink != 0 {
				return -1, fmt.Errorf("%s: %w: it is a symbolic link", dir, ErrUnsafeDir)
			}
			if !fi.IsDir() {
				return -1, fmt.Errorf("%s: %w: it is not a directory", dir, ErrUnsafeDir)
			}
		}
		return -1, fmt.Errorf("open token cache dir %s: %w", dir, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		closeFd(fd)
		return -1, fmt.Errorf("stat token cache dir %s: %w", dir, err)
	}
	if euid := syscall.Geteuid(); int(st.Uid) != euid {
		closeFd(fd)
		return -1, fmt.Errorf("%s: %w: owned by uid %d, not %d", dir, ErrUnsafeDir, st.Uid, euid)
	}
	if st.Mode&0o022 != 0 {
		closeFd(fd)
		return -1, fmt.Errorf("%s: %w: mode %04o is writable by group or others", dir, ErrUnsafeDir, st.Mode&0o7777)
	}
	return fd, nil
}

func (s *Source) entryName() string { return s.hash + ".json" }

// readRecord reads the entry and returns what it holds if it can be trusted
// (entryOK); otherwise why not. The reason never quotes the file's content.
func (s *Source) readRecord(dirfd int) (rec record, state entryState, reason string) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		// O_NONBLOCK: a FIFO planted in place of the entry must not hang us.
		fd, err = s.sys.openat(dirfd, s.entryName(), syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
		return err
	})
	switch {
	case errors.Is(err, syscall.ENOENT):
		return record{}, entryMissing, ""
	case errors.Is(err, syscall.ELOOP):
		return record{}, entryUntrusted, "it is a symbolic link"
	case err != nil:
		return record{}, entryUnreadable, "cannot open it: " + err.Error()
	}
	defer closeFd(fd)

	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return record{}, entryUnreadable, "cannot stat it: " + err.Error()
	}
	if problem := untrustedFile(&st); problem != "" {
		return record{}, entryUntrusted, problem
	}
	if st.Size > maxEntrySize {
		return record{}, entryUntrusted, "it is too large"
	}
	buf := make([]byte, st.Size)
	for n := 0; n < len(buf); {
		var m int
		err := ignoringEINTR(func() (err error) {
			m, err = syscall.Read(fd, buf[n:])
			return err
		})
		if err != nil {
			return record{}, entryUnreadable, "cannot read it: " + err.Error()
		}
		if m == 0 {
			return record{}, entryUntrusted, "it is truncated"
		}
		n += m
	}
	var e entry
	if err := json.Unmarshal(buf, &e); err != nil {
		return record{}, entryUntrusted, "it is not valid JSON" // json errors may quote content
	}
	hasTok := e.AccessToken != "" || !e.Expiry.IsZero()
	hasFail := e.Version >= 2 && (!e.RefreshFailedAt.IsZero() || !e.RetryNotBefore.IsZero() || e.Error != "")
	switch {
	case e.Version != entryVersion && e.Version != entryVersionV1:
		return record{}, entryUntrusted, fmt.Sprintf("unknown format version %d", e.Version)
	case e.KeySHA256 != s.hash:
		return record{}, entryUntrusted, "its key hash does not match its name"
	case hasTok && (e.AccessToken == "" || e.Expiry.IsZero()), !hasTok && !hasFail:
		return record{}, entryUntrusted, "it is incomplete"
	case hasFail && (e.RefreshFailedAt.IsZero() || e.RetryNotBefore.Before(e.RefreshFailedAt)):
		return record{}, entryUntrusted, "its failed-refresh record is inconsistent"
	}
	if hasTok {
		rec.tok = iam.Token{AccessToken: e.AccessToken, IssuedAt: e.IssuedAt, Expiry: e.Expiry}
	}
	if hasFail {
		rec.fail = failure{at: e.RefreshFailedAt, retryNotBefore: e.RetryNotBefore, message: failureMessage(e.Error)}
	}
	return rec, entryOK, ""
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

// dropEntry removes an untrusted entry. It is called with the lock held, so
// it cannot remove an entry that another process has just written.
func (s *Source) dropEntry(dirfd int, reason string) {
	s.log.V(2).Info("Replacing untrusted token cache entry", "file", s.entryName(), "reason", reason)
	// Removes a symbolic link or other file itself, never what it points to;
	// a directory is left alone (the write will then fail and say so).
	if err := syscall.Unlinkat(dirfd, s.entryName()); err != nil && !errors.Is(err, syscall.ENOENT) {
		s.log.V(2).Info("Could not remove untrusted token cache entry", "file", s.entryName(), "err", err.Error())
	}
}

// openLock opens (creating) the lock file without following a symbolic link
// and checks that it is a regular file owned by the effective user. Anything
// else in its place is removed and the open retried once.
func (s *Source) openLock(dirfd int) (int, error) {
	name := s.hash + ".lock"
	var lastErr error
	for range 2 {
		var fd int
		err := ignoringEINTR(func() (err error) {
			fd, err = s.sys.openat(dirfd, name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0o600)
			return err
		})
		if err != nil {
			lastErr = fmt.Errorf("open lock file %s/%s: %w", s.dir, name, err)
			if !errors.Is(err, syscall.ELOOP) {
				return -1, lastErr
			}
		} else {
			var st syscall.Stat_t
			if err := syscall.Fstat(fd, &st); err != nil {
				closeFd(fd)
				return -1, fmt.Errorf("stat lock file %s/%s: %w", s.dir, name, err)
			}
			if st.Mode&syscall.S_IFMT == syscall.S_IFREG && int(st.Uid) == syscall.Geteuid() {
				return fd, nil
			}
			closeFd(fd)
			lastErr = fmt.Errorf("lock file %s/%s: %w: not a regular file owned by uid %d", s.dir, name, ErrUnsafeDir, syscall.Geteuid())
		}
		s.log.V(2).Info("Replacing untrusted token cache lock file", "file", name)
		if err := syscall.Unlinkat(dirfd, name); err != nil && !errors.Is(err, syscall.ENOENT) {
			return -1, lastErr
		}
	}
	return -1, lastErr
}

// lockEntry takes the cross-process lock for this key, polling until
// deadline. While it waits it re-reads the entry, and returns as soon as
// settles says the entry answers the caller (another process stored a fresh
// token, or recorded a failed refresh that is still in force): lockfd -1,
// ok true. Once it has the lock it re-reads the entry too and returns it if
// trusted (ok true, whatever it holds) with lockfd >= 0; closing lockfd
// releases the lock. If the lock cannot be had in time it returns -1 and ok
// false, and the caller refreshes without it: one extra call to the source
// is better than none.
func (s *Source) lockEntry(ctx context.Context, dirfd int, deadline time.Time, settles func(record) bool) (lockfd int, rec record, ok bool) {
	fd, err := s.openLock(dirfd)
	if err != nil {
		s.diskWarning("Token cache lock unavailable; refreshing without cross-process coordination", err)
		return -1, record{}, false
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for poll := minLockPoll; ; poll = min(2*poll, maxLockPoll) {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			rec, state, reason := s.readRecord(dirfd)
			switch state {
			case entryUntrusted:
				s.dropEntry(dirfd, reason)
			case entryUnreadable:
				s.log.V(2).Info("Could not read the token cache entry", "file", s.entryName(), "reason", reason)
			}
			return fd, rec, state == entryOK
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			closeFd(fd)
			s.log.V(2).Info("Could not lock the token cache; calling the token source directly", "err", err.Error())
			return -1, record{}, false
		}
		if rec, state, _ := s.readRecord(dirfd); state == entryOK && settles(rec) {
			closeFd(fd)
			return -1, rec, true
		}
		wait := min(poll, time.Until(deadline))
		if wait <= 0 || ctx.Err() != nil {
			closeFd(fd)
			s.log.V(2).Info("Timed out waiting for another process to refresh the token; calling the token source directly")
			return -1, record{}, false
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
	}
}

// writeEntry stores tok (and no failed refresh) atomically, see writeRecord.
func (s *Source) writeEntry(dirfd int, tok iam.Token) error {
	return s.writeRecord(dirfd, record{tok: tok})
}

// writeRecord stores rec atomically: a new 0600 file in the same directory,
// written and synced, then renamed over the entry (replacing whatever is
// there, a symbolic link included, never its target), then the directory
// synced. Readers see the old entry or the new one, never a part.
func (s *Source) writeRecord(dirfd int, rec record) (err error) {
	e := entry{
		Version:     entryVersion,
		KeySHA256:   s.hash,
		AccessToken: rec.tok.AccessToken,
	}
	if rec.tok.AccessToken != "" {
		e.IssuedAt, e.Expiry = rec.tok.IssuedAt, rec.tok.Expiry
	}
	if !rec.fail.at.IsZero() {
		e.RefreshFailedAt, e.RetryNotBefore, e.Error = rec.fail.at, rec.fail.retryNotBefore, rec.fail.message
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode token cache entry: %w", err)
	}
	tmp := s.hash + "." + rand.Text() + ".tmp"
	var fd int
	err = ignoringEINTR(func() (err error) {
		fd, err = s.sys.openat(dirfd, tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return fmt.Errorf("create %s/%s: %w", s.dir, tmp, err)
	}
	defer func() {
		if fd >= 0 {
			closeFd(fd)
		}
		if err != nil {
			_ = syscall.Unlinkat(dirfd, tmp)
		}
	}()
	for p := b; len(p) > 0; {
		var n int
		err := ignoringEINTR(func() (err error) {
			n, err = s.sys.write(fd, p)
			return err
		})
		if err == nil && n == 0 {
			err = syscall.EIO
		}
		if err != nil {
			return fmt.Errorf("write %s/%s: %w", s.dir, tmp, err)
		}
		p = p[n:]
	}
	if err := ignoringEINTR(func() error { return syscall.Fsync(fd) }); err != nil {
		return fmt.Errorf("sync %s/%s: %w", s.dir, tmp, err)
	}
	err = syscall.Close(fd)
	fd = -1
	if err != nil {
		return fmt.Errorf("close %s/%s: %w", s.dir, tmp, err)
	}
	if err := syscall.Renameat(dirfd, tmp, dirfd, s.entryName()); err != nil {
		return fmt.Errorf("rename %s/%s: %w", s.dir, tmp, err)
	}
	// The token is in place; a failed directory sync only risks losing it
	// in a crash, and /run does not survive one anyway.
	if err := ignoringEINTR(func() error { return syscall.Fsync(dirfd) }); err != nil {
		s.log.V(2).Info("Could not sync the token cache directory", "dir", s.dir, "err", err.Error())
	}
	return nil
}

func closeFd(fd int) { _ = syscall.Close(fd) }

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
