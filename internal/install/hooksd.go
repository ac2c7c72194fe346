package install

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/internal/containerinfo"
)

// HooksFileVersion is the hooks.d schema karmor writes (oci-hooks(5), containers/common
// pkg/hooks 1.0.0).
const HooksFileVersion = "1.0.0"

// HooksFile is one hooks.d JSON file: one hook for the listed stages, under when's conditions.
type HooksFile struct {
	Version string     `json:"version"`
	Hook    rspec.Hook `json:"hook"`
	When    HooksWhen  `json:"when"`
	Stages  []string   `json:"stages"`
}

// HooksWhen is the condition under which a hooks.d hook is injected.
type HooksWhen struct {
	Always *bool `json:"always,omitempty"`
}

// HooksFileName is the name of karmor's hooks.d file for stage. The stage travels in the hook's
// arguments and a hooks.d file has one argument list, so there is one file per stage.
func HooksFileName(stage string) string { return "karmor-" + stage + ".json" }

// maxHooksFileBytes bounds a hooks.d file read back by Uninstall and Status.
const maxHooksFileBytes = 64 << 10

// MaxProgramBytes bounds a program copied into place.
const MaxProgramBytes = 256 << 20

// Options is what Install needs.
type Options struct {
	// Runtime is RuntimeCRIO or RuntimePodman; it picks the default hooks directory.
	Runtime string
	// HooksDir overrides the runtime's default hooks.d directory.
	HooksDir string
	// HookBinary is the karmor-hook to copy to Hook.Path.
	HookBinary string
	Hook       HookConfig
}

// Installed says what Install put where.
type Installed struct {
	Binary string
	// BinaryCopied is false when HookBinary already was Hook.Path.
	BinaryCopied bool
	HooksDir     string
	Files        []string
}

// Install copies the hook binary into place (temp file, fsync, chmod 0755, rename), then writes
// one hooks.d file per stage atomically. The binary goes first because runtimes refuse a hooks.d
// file whose hook path does not exist.
func Install(opts Options) (*Installed, error) {
	dir, err := hooksDir(opts.Runtime, opts.HooksDir)
	if err != nil {
		return nil, err
	}
	if err := opts.Hook.Check(); err != nil {
		return nil, err
	}
	res := &Installed{Binary: opts.Hook.Path, HooksDir: dir}
	res.BinaryCopied, err = CopyProgram(opts.HookBinary, opts.Hook.Path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create hooks directory: %w", err)
	}
	always := true
	for _, stage := range Stages {
		body, err := json.MarshalIndent(&HooksFile{
			Version: HooksFileVersion,
			Hook:    opts.Hook.OCIHook(stage),
			When:    HooksWhen{Always: &always},
			Stages:  []string{stage},
		}, "", "  ")
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, HooksFileName(stage))
		if err := WriteFileAtomic(path, append(body, '\n'), 0o644); err != nil {
			return nil, err
		}
		res.Files = append(res.Files, path)
	}
	return res, nil
}

func hooksDir(runtime, dir string) (string, error) {
	if dir != "" {
		if !filepath.IsAbs(dir) {
			return filepath.Abs(dir)
		}
		return filepath.Clean(dir), nil
	}
	return DefaultHooksDirFor(runtime)
}

// CopyProgram puts a copy of the program src at dst, atomically, mode 0755, creating dst's
// directory. It copies nothing when src is dst already, and reports whether it copied.
func CopyProgram(src, dst string) (bool, error) {
	if src == "" {
		return false, fmt.Errorf("no program to install at %s: pass its path", dst)
	}
	in, err := os.Open(src)
	if err != nil {
		return false, fmt.Errorf("open the program to install: %w", err)
	}
	defer in.Close()
	sfi, err := in.Stat()
	if err != nil {
		return false, err
	}
	if !sfi.Mode().IsRegular() {
		return false, fmt.Errorf("%s is not a regular file", src)
	}
	if sfi.Size() > MaxProgramBytes {
		return false, fmt.Errorf("%s is %d bytes, more than a karmor program can be (%d)", src, sfi.Size(), MaxProgramBytes)
	}
	if dfi, err := os.Stat(dst); err == nil && os.SameFile(sfi, dfi) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return false, fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
	}
	err = writeAtomic(dst, 0o755, func(w io.Writer) error {
		_, err := io.Copy(w, io.LimitReader(in, MaxProgramBytes))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("install %s: %w", dst, err)
	}
	return true, nil
}

// Removed says what Uninstall removed.
type Removed struct {
	Files  []string
	Binary string
}

// Uninstall removes karmor's hooks.d files from the runtime's hooks directory (or dir), then
// the hook binary they named (or hookPath when they named none). Files go first so that no
// runtime is left with a hook whose binary is missing. Absent files are not an error.
func Uninstall(runtime, dir, hookPath string) (*Removed, error) {
	dir, err := hooksDir(runtime, dir)
	if err != nil {
		return nil, err
	}
	res := &Removed{}
	binaries := map[string]bool{}
	for _, stage := range Stages {
		path := filepath.Join(dir, HooksFileName(stage))
		if f, err := readHooksFile(path); err == nil && filepath.IsAbs(f.Hook.Path) && filepath.Base(f.Hook.Path) == HookProgram {
			binaries[f.Hook.Path] = true
		}
		if err := os.Remove(path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return res, fmt.Errorf("remove hooks file: %w", err)
		}
		res.Files = append(res.Files, path)
	}
	if len(binaries) == 0 && hookPath != "" {
		binaries[hookPath] = true
	}
	for bin := range binaries {
		if err := os.Remove(bin); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return res, fmt.Errorf("remove karmor-hook (the hooks files are already gone): %w", err)
		}
		res.Binary = bin
	}
	return res, nil
}

func readHooksFile(path string) (*HooksFile, error) {
	body, err := containerinfo.ReadRegularFile(path, maxHooksFileBytes)
	if err != nil {
		return nil, err
	}
	var f HooksFile
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, fmt.Errorf("%s: malformed hooks file: %w", path, err)
	}
	return &f, nil
}

// FileStatus is one of karmor's hooks.d files as found.
type FileStatus struct {
	Path    string
	Stage   string
	Present bool
	// Hook is the file's hook when it could be read.
	Hook *rspec.Hook
	Err  error
}

// BinaryStatus is a hook binary as found.
type BinaryStatus struct {
	Path    string
	Present bool
	// Version is what `karmor-hook --version` printed.
	Version string
	Err     error
}

// Report is what Status found in one hooks directory.
type Report struct {
	HooksDir string
	Files    []FileStatus
	Binaries []BinaryStatus
	// Socket is the socket the installed hook reports to (from its arguments), when installed.
	Socket string
}

// Installed reports whether every stage's file is present and readable and its binary present.
func (r *Report) Installed() bool {
	for _, f := range r.Files {
		if !f.Present || f.Err != nil {
			return false
		}
	}
	for _, b := range r.Binaries {
		if !b.Present {
			return false
		}
	}
	return len(r.Binaries) > 0
}

// Status reports karmor's hooks.d files in the runtime's hooks directory (or dir) and the
// binaries they name (hookPath when none is installed), with each binary's version.
func Status(ctx context.Context, runtime, dir, hookPath string) (*Report, error) {
	dir, err := hooksDir(runtime, dir)
	if err != nil {
		return nil, err
	}
	rep := &Report{HooksDir: dir}
	seen := map[string]bool{}
	for _, stage := range Stages {
		fs := FileStatus{Path: filepath.Join(dir, HooksFileName(stage)), Stage: stage}
		f, err := readHooksFile(fs.Path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			fs.Present, fs.Err = true, err
		default:
			fs.Present, fs.Hook = true, &f.Hook
			if !seen[f.Hook.Path] {
				seen[f.Hook.Path] = true
				rep.Binaries = append(rep.Binaries, binaryStatus(ctx, f.Hook.Path))
			}
			if s := argValue(f.Hook.Args, "--socket"); s != "" {
				rep.Socket = s
			}
		}
		rep.Files = append(rep.Files, fs)
	}
	if len(rep.Binaries) == 0 && hookPath != "" {
		rep.Binaries = append(rep.Binaries, binaryStatus(ctx, hookPath))
	}
	return rep, nil
}

func binaryStatus(ctx context.Context, path string) BinaryStatus {
	bs := BinaryStatus{Path: path}
	fi, err := os.Stat(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			bs.Err = err
		}
		return bs
	}
	bs.Present = true
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		bs.Err = fmt.Errorf("%s is not an executable file (%v)", path, fi.Mode())
		return bs
	}
	bs.Version, bs.Err = ProgramVersion(ctx, path, HookProgram)
	return bs
}

// ProgramVersion runs `path --version` (bounded in time and output) and returns the version
// after the program's name, checking that the program says it is name: a wrong path must not
// pass for one of karmor's programs.
func ProgramVersion(ctx context.Context, path, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := &cappedBuffer{limit: 4 << 10}
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.Stdout = out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(out.String()), name+" ")
	if !ok {
		return "", fmt.Errorf("%s --version says %q, not %s's version", path, out.String(), name)
	}
	return strings.TrimSpace(v), nil
}

// cappedBuffer keeps the first limit bytes written to it and discards the rest.
type cappedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// argValue returns the value following flag in args ("--flag value" or "--flag=value").
func argValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}
