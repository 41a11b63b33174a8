package installer

import (
	"path/filepath"

	"github.com/icr-credential-provider/icr-credential-provider/config"
)

// APIKeyMode is the mode of the key file the installer writes: the kubelet
// runs the plugin as root, nobody else reads it.
const APIKeyMode = 0o600

// CheckAPIKey reads and validates the API key in src (a mounted Secret's
// key file: a link into its ..data is followed, a FIFO or device refused)
// with the plugin's own parser, and checks that dst can be written, so that
// an installer fails before changing anything. No error shows the key.
func CheckAPIKey(src, dst string) (key string, err error) {
	key, _, err = config.LoadAPIKeyFile(src)
	if err != nil {
		return "", errorf("--api-key-from: %v", err)
	}
	d, err := openDir(filepath.Dir(dst), "the directory of the API key file")
	if err != nil {
		return "", err
	}
	defer d.Close()
	old, err := examine(d, filepath.Base(dst), false)
	if err != nil {
		return "", err
	}
	old.close()
	return key, probeWritable(d)
}

// WriteAPIKey writes the bare key and a newline to dst (0600, atomically),
// whatever form the Secret held it in, unless dst holds it already; then
// only the mode is fixed, through the open file.
func WriteAPIKey(key, dst string) (Action, error) {
	return writeFile(dst, []byte(key+"\n"), APIKeyMode, putOptions{fixMode: true})
}
