package installer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"slices"
)

// StatePath is where the kubelet wiring keeps (as the host sees it, root
// only: 0600) each host file's content before install first changed it, or
// that it did not exist, for uninstall and a failed restart to put back.
const StatePath = "/var/lib/icr-credential-provider/wiring.json"

// wiringState is the content of StatePath.
type wiringState struct {
	Layout Layout `json:"layout"`
	Unit   string `json:"unit"`
	Config string `json:"config"` // the paths wired, as the host sees them
	BinDir string `json:"binDir"`
	// RestartPending is set while the files are changed and the kubelet not
	// yet restarted healthy with them: the next run restarts it.
	RestartPending bool         `json:"restartPending,omitempty"`
	Files          []fileRecord `json:"files"`
	Dirs           []string     `json:"dirs,omitempty"` // created by the wiring, removed again when empty
}

// fileRecord is one host file the wiring changed.
type fileRecord struct {
	Path     string      `json:"path"`
	Existed  bool        `json:"existed"`
	Previous []byte      `json:"previous,omitempty"` // its content before install first changed it
	Mode     fs.FileMode `json:"mode,omitempty"`     // and its mode
	Written  string      `json:"written"`            // sha256 of what install wrote
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (st *wiringState) record(path string) *fileRecord {
	if i := slices.IndexFunc(st.Files, func(r fileRecord) bool { return r.Path == path }); i >= 0 {
		return &st.Files[i]
	}
	return nil
}

// previous returns the record's content before install, nil if the file
// did not exist.
func (r *fileRecord) previous() []byte {
	if !r.Existed {
		return nil
	}
	return cmp0(r.Previous)
}

// cmp0 makes an existing empty content non-nil: nil means "absent".
func cmp0(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// unchangedSince reports whether content (nil: absent) is what install
// wrote, or what was there before it (a run stopped before its write).
func (r *fileRecord) unchangedSince(content []byte) (written, previous bool) {
	if content != nil && digest(content) == r.Written {
		return true, false
	}
	return false, (content == nil) == !r.Existed && (content == nil || bytes.Equal(content, r.Previous))
}

// readState returns the state on h and its raw bytes (nil: none).
func readState(h Host) (*wiringState, []byte, error) {
	local := h.Path(StatePath)
	// It says what uninstall writes back where, as root.
	if err := CheckTrusted(local, "the kubelet wiring's state file"); err != nil {
		return nil, nil, err
	}
	raw, err := os.ReadFile(local)
	if errors.Is(err, fs.ErrNotExist) {
		return &wiringState{}, nil, nil
	}
	if err != nil {
		return nil, nil, hostFileError(StatePath, err)
	}
	var st wiringState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, nil, errorf("%s is not valid JSON (%v): it holds what the kubelet wiring changed; restore those files by hand, then remove it", StatePath, err)
	}
	return &st, raw, nil
}

func (st *wiringState) encode() []byte {
	b, _ := json.MarshalIndent(st, "", "  ")
	return append(b, '\n')
}
