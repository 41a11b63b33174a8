package iam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// maxKeyFile bounds an API key file; a key is 44 characters, the JSON file
// written by 'ibmcloud iam service-api-key-create --file' a few hundred bytes.
const maxKeyFile = 64 << 10

// KeyFileWarning is a non-fatal finding about an API key file.
type KeyFileWarning string

// LoadAPIKeyFile reads an IAM API key from path. The file holds the bare key
// (surrounding white space ignored) or the JSON written by
// 'ibmcloud iam service-api-key-create NAME ID --file FILE' ({"apikey": …}).
// A group- or world-readable file is accepted with a warning. Errors name the
// file and the fix, never the key.
func LoadAPIKeyFile(path string) (key string, warnings []KeyFileWarning, err error) {
	f, err := os.Open(path)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", nil, fmt.Errorf("API key file %s does not exist: create it with the key ('ibmcloud iam service-api-key-create NAME SERVICE_ID --file %s') or unset --api-key-file/ICR_API_KEY_FILE", path, path)
		case errors.Is(err, fs.ErrPermission):
			return "", nil, fmt.Errorf("API key file %s is not readable by this user: make it readable by the kubelet's user (root), mode 0600", path)
		}
		return "", nil, fmt.Errorf("cannot open API key file %s: %v: check --api-key-file", path, pathlessErr(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", nil, fmt.Errorf("cannot stat API key file %s: %v", path, pathlessErr(err))
	}
	if !st.Mode().IsRegular() {
		return "", nil, fmt.Errorf("API key file %s is not a regular file (%s): point --api-key-file at the file that holds the key", path, st.Mode().Type())
	}
	if st.Mode().Perm()&0o044 != 0 {
		warnings = append(warnings, KeyFileWarning(fmt.Sprintf("API key file %s is readable by other users (mode %04o): run 'chmod 600 %s'", path, st.Mode().Perm(), path)))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return "", nil, fmt.Errorf("cannot read API key file %s: %v", path, pathlessErr(err))
	}
	if len(data) > maxKeyFile {
		return "", nil, fmt.Errorf("API key file %s is larger than %d KiB, which no API key is: check --api-key-file", path, maxKeyFile>>10)
	}
	key, err = ParseAPIKey(data)
	if err != nil {
		return "", nil, fmt.Errorf("API key file %s %v", path, err)
	}
	return key, warnings, nil
}

// ParseAPIKey extracts the key from a file's or variable's content. Its errors
// complete the sentence "API key file F …" and never quote the content.
func ParseAPIKey(data []byte) (string, error) {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", errors.New("is empty: put the API key in it")
	}
	if strings.HasPrefix(s, "{") {
		var v struct {
			APIKey string `json:"apikey"`
		}
		if err := json.Unmarshal([]byte(s), &v); err != nil || strings.TrimSpace(v.APIKey) == "" {
			return "", errors.New("looks like JSON but has no \"apikey\" field: use the file written by 'ibmcloud iam service-api-key-create --file', or the bare key")
		}
		s = strings.TrimSpace(v.APIKey)
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return "", errors.New("holds more than one word: it must contain only the API key")
	}
	return s, nil
}

// pathlessErr drops the path from *fs.PathError, which the caller names.
func pathlessErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
