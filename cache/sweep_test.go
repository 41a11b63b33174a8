package cache

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tidyAt opens dir as the disk store does at now, which tidies it.
func tidyAt(t *testing.T, dir string, now time.Time) {
	t.Helper()
	logger, _ := newLogCapture()
	d, err := openDisk(dir, hashOf(testKey), realSys, logger, now)
	if err != nil {
		t.Fatal(err)
	}
	d.close()
}

func exists(dir, name string) bool {
	_, err := os.Lstat(filepath.Join(dir, name))
	return err == nil
}

func TestSweep(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	hash := strings.Repeat("ab", 32)
	old, fresh := hash+".json", strings.Repeat("cd", 32)+".json"
	other := "not-ours.txt"
	for _, n := range []string{old, hash + ".lock", fresh, other} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	past := now.Add(-SweepAge - time.Minute)
	for _, n := range []string{old, hash + ".lock", other} {
		os.Chtimes(filepath.Join(dir, n), past, past)
	}
	tidyAt(t, dir, now)
	for _, gone := range []string{old, hash + ".lock"} {
		if exists(dir, gone) {
			t.Errorf("%s survived", gone)
		}
	}
	for _, kept := range []string{fresh, other} {
		if !exists(dir, kept) {
			t.Errorf("%s was removed", kept)
		}
	}
	// Not due again within the interval.
	os.WriteFile(filepath.Join(dir, old), []byte("x"), 0o600)
	os.Chtimes(filepath.Join(dir, old), past, past)
	tidyAt(t, dir, now.Add(SweepEvery-time.Second))
	if !exists(dir, old) {
		t.Errorf("swept again within the interval")
	}
	tidyAt(t, dir, now.Add(SweepEvery+time.Second))
	if exists(dir, old) {
		t.Errorf("not swept after the interval")
	}
}

// TestTempFilesOfKilledWriters: a temporary file whose writer is gone (it
// holds a token, written by a process killed before its rename) is removed
// by the next run that opens the directory, on any path; one a live writer
// holds is left alone, and so is anything not named like ours.
func TestTempFilesOfKilledWriters(t *testing.T) {
	dir := t.TempDir()
	hash := hashOf(testKey)
	dead := hash + ".deadbeef.tmp"
	live := strings.Repeat("cd", 32) + ".cafe.tmp"
	other := "x.tmp"
	for _, n := range []string{dead, live, other} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(`{"access_token":"SECRET-half-written"`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(filepath.Join(dir, live))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// A warm run: the token is fresh on disk, no refresh, no write.
	clock := newClock()
	fake := newSource(clock.Now, time.Hour)
	if _, err := newCache(fake.source(), testKey, Options{Dir: dir, Now: clock.Now}).Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := newCache(fake.source(), testKey, Options{Dir: dir, Now: clock.Now}).Token(t.Context()); err != nil || fake.calls.Load() != 1 {
		t.Fatalf("warm run: %v, %d calls", err, fake.calls.Load())
	}
	if exists(dir, dead) {
		t.Error("the killed writer's temporary file survived a run")
	}
	if !exists(dir, live) || !exists(dir, other) {
		t.Error("a live writer's file, or a file not ours, was removed")
	}
}
