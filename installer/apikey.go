package installer

import (
	"os"
	"path/filepath"

	"github.com/icr-credential-provider/icr-credential-provider/config"
)

// APIKeyMode is the mode of the key file the installer writes: the kubelet
// runs the plugin as root, nobody else reads it.
const APIKeyMode = 0o600

// CheckAPIKey reads and validates the API key in src (a mounted Secret's
// key file: a link into the Secret's ..data is followed, a FIFO or device
// refused) with the plugin's own parser, and checks that dst can be
// written, so that an installer fails before changing anything. The key
// never appears in an error.
func CheckAPIKey(src, dst string) (key string, err error) {
	key, _, err = config.LoadAPIKeyFile(src)
	if err != nil {
		return "", errorf("--api-key-from: %v", err)
	}
	if err := checkDir(filepath.Dir(dst), "the directory of the API key file"); err != nil {
		return "", err
	}
	if _, err := checkTarget(dst, false); err != nil {
		return "", err
	}
	return key, probeWritable(filepath.Dir(dst))
}

// WriteAPIKey writes key to dst (0600, atomically) unless dst holds it
// already; then only the mode is fixed. The content is the bare key and a
// newline, whatever form the Secret held it in.
func WriteAPIKey(key, dst string) (Action, error) {
	action, err := WriteFile(dst, []byte(key+"\n"), APIKeyMode, false)
	if err != nil || action != Unchanged {
		return action, err
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return "", writeError(filepath.Dir(dst), err)
	}
	if fi.Mode().Perm() != APIKeyMode {
		if err := os.Chmod(dst, APIKeyMode); err != nil {
			return "", writeError(filepath.Dir(dst), err)
		}
		return Updated, nil
	}
	return Unchanged, nil
}
