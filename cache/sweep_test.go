package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSweepIfDue(t *testing.T) {
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
	past := time.Now().Add(-3 * time.Hour)
	for _, n := range []string{old, hash + ".lock", other} {
		os.Chtimes(filepath.Join(dir, n), past, past)
	}
	n, err := SweepIfDue(dir, 10*time.Minute, 2*time.Hour, time.Now())
	if err != nil || n != 2 {
		t.Fatalf("removed %d, %v; want 2", n, err)
	}
	for _, gone := range []string{old, hash + ".lock"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s survived", gone)
		}
	}
	for _, kept := range []string{fresh, other} {
		if _, err := os.Lstat(filepath.Join(dir, kept)); err != nil {
			t.Errorf("%s was removed", kept)
		}
	}
	// Not due again within the interval.
	os.WriteFile(filepath.Join(dir, old), []byte("x"), 0o600)
	os.Chtimes(filepath.Join(dir, old), past, past)
	if n, _ := SweepIfDue(dir, 10*time.Minute, 2*time.Hour, time.Now()); n != 0 {
		t.Errorf("swept again within the interval")
	}
	if n, _ := SweepIfDue(dir, 10*time.Minute, 2*time.Hour, time.Now().Add(11*time.Minute)); n != 1 {
		t.Errorf("not swept after the interval")
	}
	if n, err := SweepIfDue(filepath.Join(dir, "missing"), time.Minute, time.Hour, time.Now()); n != 0 || err != nil {
		t.Errorf("missing dir: %d %v", n, err)
	}
}
