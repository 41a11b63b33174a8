package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/icr-credential-provider/icr-credential-provider/hostfile"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// maxKeyFile bounds an API key file; a key is 44 characters, the JSON of
// 'ibmcloud iam service-api-key-create --file' a few hundred bytes.
const maxKeyFile = 64 << 10

// createKeyHint is how an operator makes a key file.
const createKeyHint = "'ibmcloud iam service-api-key-create NAME SERVICE_ID --file %s'"

// LoadAPIKeyFile reads an IAM API key from path, a regular file (a FIFO or
// device would block or never end) holding the bare key or the JSON of
// 'ibmcloud iam service-api-key-create … --file' ({"apikey": …}). A group-
// or world-readable file gives a warning. Errors are *Error, naming the file
// and the fix, never the key. The key joins the process's secret set.
func LoadAPIKeyFile(path string) (key string, warnings []string, err error) {
	data, fi, err := hostfile.Read(path, maxKeyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil, &Error{Cause: "API key file " + path + " does not exist",
			Fix: "create it with the key (" + fmt.Sprintf(createKeyHint, path) + ") or unset --api-key-file/ICR_API_KEY_FILE"}
	case errors.Is(err, fs.ErrPermission):
		return "", nil, &Error{Cause: "API key file " + path + " is not readable by this user",
			Fix: "make it readable by the kubelet's user (root), mode 0600"}
	case errors.Is(err, hostfile.ErrNotRegular):
		return "", nil, &Error{Cause: fmt.Sprintf("API key file %s is not a regular file (%s)", path, fi.Mode().Type()),
			Fix: "point --api-key-file at the file that holds the key"}
	case errors.Is(err, hostfile.ErrTooLarge):
		return "", nil, &Error{Cause: fmt.Sprintf("API key file %s is larger than %d KiB, which no API key is", path, maxKeyFile>>10), Fix: "check --api-key-file"}
	case err != nil:
		return "", nil, &Error{Cause: fmt.Sprintf("cannot read API key file %s: %v", path, Bare(err)), Fix: "check --api-key-file"}
	}
	if fi.Mode().Perm()&0o044 != 0 {
		warnings = append(warnings, fmt.Sprintf("API key file %s is readable by other users (mode %04o): %s", path, fi.Mode().Perm(), hostfile.ModeFix(path, 0o600)))
	}
	key, problem := parseAPIKey(data)
	if problem != "" {
		fix := "put only the API key in it, or the JSON written by " + fmt.Sprintf(createKeyHint, path)
		if problem == keyEmpty {
			fix = "put the API key in it (" + fmt.Sprintf(createKeyHint, path) + ")"
		}
		return "", nil, &Error{Cause: "API key file " + path + " " + problem, Fix: fix}
	}
	return key, warnings, nil
}

const keyEmpty = "is empty"

// parseAPIKey extracts the key from a file's or variable's content into the
// process's secret set; problem completes "API key file F …" without
// quoting the content, "" if the key is usable.
func parseAPIKey(data []byte) (key, problem string) {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", keyEmpty
	}
	if strings.HasPrefix(s, "{") {
		var v struct {
			APIKey string `json:"apikey"`
		}
		if err := json.Unmarshal([]byte(s), &v); err != nil || strings.TrimSpace(v.APIKey) == "" {
			secret.Add(s)
			return "", `looks like JSON but has no "apikey" field`
		}
		s = strings.TrimSpace(v.APIKey)
	}
	secret.Add(s)
	if strings.ContainsAny(s, " \t\r\n") {
		secret.Add(strings.Fields(s)...)
		return "", "holds more than one word"
	}
	return s, ""
}

// Bare drops the operation and path, which the caller's message names, from
// a *fs.PathError or *os.LinkError: "permission denied", not "open /x: …".
func Bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
