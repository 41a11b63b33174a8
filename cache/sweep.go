package cache

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// sweepStamp marks the last sweep of a cache directory.
const sweepStamp = "sweep.stamp"

// SweepIfDue removes cache files (entries, locks, leftover temporary files)
// that nobody has written for maxAge, at most once per every: it keeps a
// directory from filling up with entries for identities that come and go,
// such as service-account tokens, of which the kubelet mints one per pod.
// Entries are rewritten whenever their token is refreshed, and no IAM token
// lives longer than an hour, so a maxAge of a few hours only removes dead
// files. A lock file in use at that moment may be removed; the cost is at
// most one extra token request. It returns how many files it removed.
func SweepIfDue(dir string, every, maxAge time.Duration, now time.Time) (int, error) {
	if dir == "" {
		return 0, nil
	}
	fd, err := openDirNoFollow(dir)
	if errors.Is(err, syscall.ENOENT) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open token cache dir %s: %w", dir, err)
	}
	d := os.NewFile(uintptr(fd), dir) // owns fd from here
	defer d.Close()

	// DirEntry.Info is an lstat relative to the open directory: it never
	// follows a symbolic link.
	entries, err := d.ReadDir(-1)
	if err != nil {
		return 0, fmt.Errorf("list token cache dir %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.Name() == sweepStamp {
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() && now.Sub(info.ModTime()) < every {
				return 0, nil
			}
		}
	}
	if err := touch(fd); err != nil {
		return 0, fmt.Errorf("mark sweep of %s: %w", dir, err)
	}
	removed := 0
	for _, e := range entries {
		name := e.Name()
		if !isCacheFileName(name) {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < maxAge {
			continue
		}
		// unlinkat removes a symbolic link itself, never its target.
		if err := syscall.Unlinkat(fd, name); err == nil {
			removed++
		}
	}
	return removed, nil
}

// touch creates or updates the sweep stamp without following a symlink.
func touch(dirfd int) error {
	fd, err := syscall.Openat(dirfd, sweepStamp, syscall.O_CREAT|syscall.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return err
	}
	defer closeFd(fd)
	tv := syscall.NsecToTimeval(time.Now().UnixNano())
	return syscall.Futimes(fd, []syscall.Timeval{tv, tv})
}
