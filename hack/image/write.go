package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// writeLayout writes idx as the one entry of a new OCI layout in dir,
// replacing the layout already there. ref, if not empty, names the entry
// (org.opencontainers.image.ref.name: the tag, as skopeo reads it;
// io.containerd.image.name: the whole reference, as ctr import reads it).
func writeLayout(dir string, idx v1.ImageIndex, ref string) error {
	if err := removeLayout(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	var anns map[string]string
	if ref != "" {
		tag, err := name.NewTag(ref)
		if err != nil {
			return err
		}
		anns = map[string]string{
			"org.opencontainers.image.ref.name": tag.TagStr(),
			"io.containerd.image.name":          tag.Name(),
		}
	}
	return p.AppendIndex(idx, layout.WithAnnotations(anns))
}

// removeLayout removes dir if it is an OCI layout, empty or absent, and
// refuses anything else: a mistyped --layout must not delete a directory.
func removeLayout(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("%s is neither empty nor an OCI layout: not replacing it", dir)
		}
	}
	return os.RemoveAll(dir)
}

// writeArchive writes the layout in dir as a tar file (an "OCI archive"),
// in path order, owned by 0:0, every mtime mtime: reproducible too.
func writeArchive(file, dir string, mtime time.Time) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".oci-archive-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	tw := tar.NewWriter(tmp)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error { // lexical order
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Format: tar.FormatUSTAR}
		if d.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", modeDir
			return tw.WriteHeader(h)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, modeFile, st.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("OCI archive: %w", err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Chmod(modeFile); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// push uploads idx and its images to ref with the credentials of the
// Docker config (~/.docker/config.json, $DOCKER_CONFIG: docker login,
// crane auth login, credential helpers) and returns ref by digest.
func push(ctx context.Context, ref string, idx v1.ImageIndex) (string, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", err
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("push %s: %w", tag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	return tag.Context().Digest(d.String()).String(), nil
}

// printImage writes the summary line of one platform's image.
func printImage(w io.Writer, b built) error {
	d, err := b.image.Digest()
	if err != nil {
		return err
	}
	m, err := b.image.Manifest()
	if err != nil {
		return err
	}
	var size int64
	for _, l := range m.Layers {
		size += l.Size
	}
	_, err = fmt.Fprintf(w, "%-14s %s  %5.1f MB  %s\n", b.platform.OS+"/"+b.platform.Architecture, d, float64(size)/1e6, strings.Join(b.commands, ", "))
	return err
}
