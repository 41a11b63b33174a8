package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

// runnableImages collects --image-layer and --image-entrypoint, keyed by
// repository:tag, in the order the references first appear.
type runnableImages struct {
	order       []string
	layers      map[string][][]byte
	entrypoints map[string][]string
}

func newRunnableImages() *runnableImages {
	return &runnableImages{layers: map[string][][]byte{}, entrypoints: map[string][]string{}}
}

// splitRef splits "repository:tag".
func splitRef(ref string) (repo, tag string, err error) {
	i := strings.LastIndex(ref, ":")
	if i <= 0 || i == len(ref)-1 || strings.Contains(ref[i:], "/") {
		return "", "", fmt.Errorf("%q: want repository:tag", ref)
	}
	return ref[:i], ref[i+1:], nil
}

func (r *runnableImages) addLayer(ref string, layer []byte) error {
	if _, _, err := splitRef(ref); err != nil {
		return err
	}
	if _, seen := r.layers[ref]; !seen {
		r.order = append(r.order, ref)
	}
	r.layers[ref] = append(r.layers[ref], layer)
	return nil
}

func (r *runnableImages) setEntrypoint(ref string, argv []string) error {
	if _, _, err := splitRef(ref); err != nil {
		return err
	}
	r.entrypoints[ref] = argv
	return nil
}

// options turns the images into iamtest options; an entrypoint without
// layers is an error.
func (r *runnableImages) options() ([]iamtest.Option, error) {
	for ref := range r.entrypoints {
		if _, ok := r.layers[ref]; !ok {
			return nil, errors.New("--image-entrypoint " + ref + ": no --image-layer for it")
		}
	}
	var opts []iamtest.Option
	for _, ref := range r.order {
		repo, tag, _ := splitRef(ref)
		opts = append(opts, iamtest.WithImageLayers(repo, tag, r.entrypoints[ref], r.layers[ref]...))
	}
	return opts, nil
}
