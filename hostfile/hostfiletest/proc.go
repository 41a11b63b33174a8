// Package hostfiletest builds fake proc file systems for tests of code that
// looks for processes with hostfile.Processes.
package hostfiletest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process adds process pid to the fake proc file system at procDir: its
// command line argv, its uid (real, effective, saved, fs) and, as its exe
// link, exe (an existing file; "" for none).
func Process(procDir string, pid, uid int, exe string, argv ...string) error {
	dir := filepath.Join(procDir, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(argv, "\x00")+"\x00"), 0o444); err != nil {
		return err
	}
	status := fmt.Sprintf("Name:\t%s\nUid:\t%d\t%d\t%d\t%d\n", filepath.Base(argv[0]), uid, uid, uid, uid)
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o444); err != nil {
		return err
	}
	if exe == "" {
		return nil
	}
	return os.Symlink(exe, filepath.Join(dir, "exe"))
}

// Executable writes a stand-in executable at path, mode 0755, owned by
// this process's user (root in CI), and returns path.
func Executable(path string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755)
}
