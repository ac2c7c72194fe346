package containerinfo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// Size caps for the runtime's inputs. A real state is a few hundred bytes plus the annotations;
// a real config.json is a few KiB to a few hundred KiB (big seccomp profiles).
const (
	MaxStateBytes = 1 << 20
	MaxSpecBytes  = 4 << 20
)

// ErrTooLarge is returned when a state or config exceeds its cap.
var ErrTooLarge = errors.New("input too large")

// ReadState decodes an OCI state (what a runtime writes on a hook's stdin) of at most
// MaxStateBytes. It rejects a state without a container id or with a negative pid.
func ReadState(r io.Reader) (*rspec.State, error) {
	body, err := readCapped(r, MaxStateBytes)
	if err != nil {
		return nil, fmt.Errorf("read OCI state: %w", err)
	}
	return DecodeState(body)
}

// DecodeState decodes and checks one OCI state JSON document (see ReadState).
func DecodeState(body []byte) (*rspec.State, error) {
	if len(body) > MaxStateBytes {
		return nil, fmt.Errorf("OCI state is %d bytes: %w (limit %d)", len(body), ErrTooLarge, MaxStateBytes)
	}
	var st rspec.State
	if err := decodeStrictJSON(body, &st); err != nil {
		return nil, fmt.Errorf("malformed OCI state: %w", err)
	}
	switch {
	case st.ID == "":
		return nil, errors.New("OCI state has no container id")
	case st.Pid < 0:
		return nil, fmt.Errorf("OCI state has a negative pid %d", st.Pid)
	}
	return &st, nil
}

// ReadSpec reads <bundle>/config.json, at most MaxSpecBytes. bundle must be an absolute path and
// config.json a regular file, not a symlink, so that a bundle cannot make the reader follow a
// link elsewhere or block on a FIFO.
func ReadSpec(bundle string) (*rspec.Spec, error) {
	if bundle == "" || !filepath.IsAbs(bundle) {
		return nil, fmt.Errorf("bundle path %q is not absolute", bundle)
	}
	path := filepath.Join(bundle, "config.json")
	body, err := ReadRegularFile(path, MaxSpecBytes)
	if err != nil {
		return nil, fmt.Errorf("read OCI config: %w", err)
	}
	return DecodeSpec(body)
}

// ReadSpecSummary is ReadSpec for callers that only need what FromOCI reads: it returns a Spec
// holding only the annotations, process.apparmorProfile, process.capabilities and
// linux.cgroupsPath, and skips the rest of the document unchecked. Decoding the full spec types
// costs a fresh process about half a millisecond of reflection, which karmor-hook cannot afford
// on every container start.
func ReadSpecSummary(bundle string) (*rspec.Spec, error) {
	if bundle == "" || !filepath.IsAbs(bundle) {
		return nil, fmt.Errorf("bundle path %q is not absolute", bundle)
	}
	body, err := ReadRegularFile(filepath.Join(bundle, "config.json"), MaxSpecBytes)
	if err != nil {
		return nil, fmt.Errorf("read OCI config: %w", err)
	}
	return DecodeSpecSummary(body)
}

// specSummary is the part of config.json FromOCI reads.
type specSummary struct {
	Annotations map[string]string `json:"annotations"`
	Process     *struct {
		ApparmorProfile string                   `json:"apparmorProfile"`
		Capabilities    *rspec.LinuxCapabilities `json:"capabilities"`
	} `json:"process"`
	Linux *struct {
		CgroupsPath string `json:"cgroupsPath"`
	} `json:"linux"`
}

// DecodeSpecSummary decodes the fields of a config.json document that ReadSpecSummary keeps.
func DecodeSpecSummary(body []byte) (*rspec.Spec, error) {
	if len(body) > MaxSpecBytes {
		return nil, fmt.Errorf("OCI config is %d bytes: %w (limit %d)", len(body), ErrTooLarge, MaxSpecBytes)
	}
	var sum specSummary
	if err := decodeStrictJSON(body, &sum); err != nil {
		return nil, fmt.Errorf("malformed OCI config: %w", err)
	}
	spec := &rspec.Spec{Annotations: sum.Annotations}
	if sum.Process != nil {
		spec.Process = &rspec.Process{ApparmorProfile: sum.Process.ApparmorProfile, Capabilities: sum.Process.Capabilities}
	}
	if sum.Linux != nil {
		spec.Linux = &rspec.Linux{CgroupsPath: sum.Linux.CgroupsPath}
	}
	return spec, nil
}

// DecodeSpec decodes one OCI config.json document of at most MaxSpecBytes.
func DecodeSpec(body []byte) (*rspec.Spec, error) {
	if len(body) > MaxSpecBytes {
		return nil, fmt.Errorf("OCI config is %d bytes: %w (limit %d)", len(body), ErrTooLarge, MaxSpecBytes)
	}
	var spec rspec.Spec
	if err := decodeStrictJSON(body, &spec); err != nil {
		return nil, fmt.Errorf("malformed OCI config: %w", err)
	}
	return &spec, nil
}

// ReadRegularFile reads a regular file of at most limit bytes without following a symlink in its
// last component and without blocking on a FIFO or device.
func ReadRegularFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symlink; refusing to follow it", path)
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes: %w (limit %d)", path, fi.Size(), ErrTooLarge, limit)
	}
	body, err := readCapped(f, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return body, nil
}

// readCapped reads r to its end, failing with ErrTooLarge beyond limit bytes.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w (limit %d bytes)", ErrTooLarge, limit)
	}
	return body, nil
}

// decodeStrictJSON decodes exactly one JSON value into v; trailing data is an error.
// Unknown fields are allowed: runtimes add fields the spec types do not know yet.
func decodeStrictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}
