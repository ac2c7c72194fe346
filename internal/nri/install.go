package nri

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/nri/pkg/api"

	"github.com/karmor/karmor/internal/install"
)

// How karmor-nri is started beside the runtime.
const (
	// StartPreregistered puts karmor-nri in NRI's plugin_path as <index>-karmor, with its
	// configuration in plugin_config_path: the runtime starts it when the runtime starts.
	StartPreregistered = "preregistered"
	// StartSystemd installs karmor-nri and a systemd unit that runs it and restarts it; it
	// connects to the runtime's NRI socket.
	StartSystemd = "systemd"
)

// Defaults of the systemd way.
const (
	DefaultBinaryPath = "/usr/local/bin/karmor-nri"
	DefaultSystemdDir = "/etc/systemd/system"
	SystemdUnitName   = "karmor-nri.service"
)

// InstallOptions is what Install needs.
type InstallOptions struct {
	// Hook is how karmor-hook runs; HookBinary is the karmor-hook copied to Hook.Path.
	Hook       install.HookConfig
	HookBinary string
	// NRIBinary is the karmor-nri to install.
	NRIBinary string
	// Start is StartPreregistered or StartSystemd.
	Start       string
	PluginIndex string // DefaultPluginIndex when empty
	// PluginDir and PluginConfigDir are NRI's plugin_path and plugin_config_path (preregistered).
	PluginDir, PluginConfigDir string
	// BinaryPath, SystemdDir and Socket are where karmor-nri goes, where its unit goes, and the
	// runtime's NRI socket it connects to (systemd).
	BinaryPath, SystemdDir, Socket string
}

// Installed lists what Install put in place.
type Installed struct {
	Written []string // files written
	Kept    []string // programs already in place
}

// Install copies karmor-hook and karmor-nri into place and writes what starts the plugin: its
// configuration file (preregistered) or its systemd unit. Every file is written atomically.
func Install(o InstallOptions) (*Installed, error) {
	if err := o.Hook.Check(); err != nil {
		return nil, err
	}
	if o.PluginIndex == "" {
		o.PluginIndex = DefaultPluginIndex
	}
	if err := api.CheckPluginIndex(o.PluginIndex); err != nil {
		return nil, err
	}
	res := &Installed{}
	if err := res.program(o.HookBinary, o.Hook.Path); err != nil {
		return res, err
	}
	cfg := Config{Hook: o.Hook}
	switch o.Start {
	case StartPreregistered:
		if o.PluginDir == "" || o.PluginConfigDir == "" {
			return res, errors.New("the NRI plugin and plugin configuration directories are needed")
		}
		name := o.PluginIndex + "-" + DefaultPluginName
		if err := res.program(o.NRIBinary, filepath.Join(o.PluginDir, name)); err != nil {
			return res, err
		}
		body, err := FormatConfig(cfg)
		if err != nil {
			return res, err
		}
		return res, res.file(filepath.Join(o.PluginConfigDir, name+".conf"), body, 0o644)
	case StartSystemd:
		if !filepath.IsAbs(o.BinaryPath) || o.SystemdDir == "" {
			return res, fmt.Errorf("karmor-nri's path %q must be absolute and the systemd directory set", o.BinaryPath)
		}
		if err := res.program(o.NRIBinary, o.BinaryPath); err != nil {
			return res, err
		}
		args := CommandLine(Options{Run: RunOptions{Socket: o.Socket, Index: o.PluginIndex}, Config: cfg})
		return res, res.file(filepath.Join(o.SystemdDir, SystemdUnitName), []byte(SystemdUnit(o.BinaryPath, args)), 0o644)
	}
	return res, fmt.Errorf("start %q: want %s or %s", o.Start, StartPreregistered, StartSystemd)
}

// program copies src to dst atomically, mode 0755, unless they are the same file.
func (r *Installed) program(src, dst string) error {
	copied, err := install.CopyProgram(src, dst)
	if err != nil {
		return err
	}
	if copied {
		r.Written = append(r.Written, dst)
	} else {
		r.Kept = append(r.Kept, dst)
	}
	return nil
}

// file writes path atomically, creating its directory.
func (r *Installed) file(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := install.WriteFileAtomic(path, data, perm); err != nil {
		return err
	}
	r.Written = append(r.Written, path)
	return nil
}

// SystemdUnit renders the unit that runs karmor-nri beside containerd and restarts it.
func SystemdUnit(path string, args []string) string {
	quoted := make([]string, 0, len(args)+1)
	for _, a := range append([]string{path}, args...) {
		quoted = append(quoted, systemdQuote(a))
	}
	return `[Unit]
Description=karmor-nri, karmor's NRI plugin: adds karmor-hook and pod labels to containerd's containers
After=containerd.service
PartOf=containerd.service

[Service]
ExecStart=` + strings.Join(quoted, " ") + `
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`
}

// systemdQuote quotes one ExecStart argument: specifiers (%) and variables ($) are escaped, and
// arguments with blanks, quotes or backslashes are double-quoted with C-style escapes.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\n\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// NRIProgram is karmor-nri's program name: it appears in its binary and in the unit that runs it.
const NRIProgram = "karmor-nri"

// maxUnitBytes bounds a unit Uninstall and Status read back: one karmor writes is well under 1 KiB.
const maxUnitBytes = 64 << 10

// errNotKarmors marks a file at one of karmor's paths that karmor did not put there.
var errNotKarmors = errors.New("not karmor's")

// Locations say where Install put karmor-hook and karmor-nri: Uninstall and Status look there.
type Locations struct {
	// HookPath is karmor-hook's path when no installed configuration or unit names one.
	HookPath string
	// PluginIndex is the pre-registered plugin's index (DefaultPluginIndex when empty).
	PluginIndex string
	// PluginDir and PluginConfigDir are NRI's plugin_path and plugin_config_path; empty skips
	// the pre-registered way.
	PluginDir, PluginConfigDir string
	// SystemdDir holds karmor-nri's unit; empty skips the systemd way. BinaryPath is the
	// karmor-nri the unit runs when the unit does not say.
	SystemdDir, BinaryPath string
	// HooksDirs are hooks.d directories (CRI-O's, Podman's) whose karmor files may run the same
	// karmor-hook: Uninstall keeps karmor-hook while one of them does.
	HooksDirs []string
}

func (l Locations) pluginFiles() (plugin, conf string) {
	name := l.PluginIndex + "-" + DefaultPluginName
	return filepath.Join(l.PluginDir, name), filepath.Join(l.PluginConfigDir, name+".conf")
}

func (l Locations) unitPath() string { return filepath.Join(l.SystemdDir, SystemdUnitName) }

// wantsLink is where `systemctl enable` links the unit (its WantedBy).
func (l Locations) wantsLink() string {
	return filepath.Join(l.SystemdDir, "multi-user.target.wants", SystemdUnitName)
}

func (l *Locations) check() error {
	if l.PluginIndex == "" {
		l.PluginIndex = DefaultPluginIndex
	}
	if err := api.CheckPluginIndex(l.PluginIndex); err != nil {
		return err
	}
	if l.PluginDir != "" && l.PluginConfigDir == "" || l.PluginDir == "" && l.PluginConfigDir != "" {
		return errors.New("the NRI plugin and plugin configuration directories go together")
	}
	return nil
}

// installedUnit is what karmor-nri's unit says, when it is karmor's.
type installedUnit struct {
	program string  // ExecStart's program, "" when the line cannot be read
	options Options // ExecStart's arguments as karmor-nri reads them
	err     error   // why the arguments could not be read
}

// readUnit reads the unit at path. It is karmor's when it names karmor-nri.
func readUnit(path string) (*installedUnit, error) {
	body, err := readOwnFile(path, maxUnitBytes)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(body, []byte(NRIProgram)) {
		return nil, fmt.Errorf("%s is %w: it does not run %s", path, errNotKarmors, NRIProgram)
	}
	u := &installedUnit{}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStart="); ok {
			args, err := splitExecStart(v)
			if err != nil || len(args) == 0 {
				u.err = fmt.Errorf("%s: ExecStart cannot be read: %v", path, err)
				return u, nil
			}
			u.program = args[0]
			u.options, u.err = ParseArgs(args[1:], io.Discard)
			if u.err != nil {
				u.err = fmt.Errorf("%s: karmor-nri's arguments: %w", path, u.err)
			}
			return u, nil
		}
	}
	u.err = fmt.Errorf("%s has no ExecStart", path)
	return u, nil
}

// splitExecStart undoes SystemdUnit's quoting of one ExecStart line: double-quoted arguments
// with C-style escapes, %% and $$.
func splitExecStart(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg, quoted, escaped := false, false, false
	unescape := strings.NewReplacer("%%", "%", "$$", "$")
	// Byte by byte: every special character is ASCII, and other bytes pass through as they are.
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			switch c {
			case 'n':
				cur.WriteByte('\n')
			case 't':
				cur.WriteByte('\t')
			default:
				cur.WriteByte(c)
			}
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted, inArg = !quoted, true
		case !quoted && (c == ' ' || c == '\t'):
			if inArg {
				args = append(args, unescape.Replace(cur.String()))
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if quoted || escaped {
		return nil, errors.New("unterminated quote")
	}
	if inArg {
		args = append(args, unescape.Replace(cur.String()))
	}
	return args, nil
}

// readOwnFile reads a regular file (not following a final symlink, not blocking on a FIFO) of
// at most limit bytes. Anything else at path is not karmor's.
func readOwnFile(path string, limit int64) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%s is %w: it is larger than %d bytes", path, errNotKarmors, limit)
	}
	return body, nil
}

func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is %w: it is a symbolic link", path, errNotKarmors)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is %w: it is not a regular file (%v)", path, errNotKarmors, fi.Mode().Type())
	}
	return f, nil
}

// checkProgram says whether path is the named karmor program: a regular file of at most
// install.MaxProgramBytes that contains its name (Go binaries carry their messages and
// package paths), so that a path flag pointing at another program does not remove it.
func checkProgram(path, name string) error {
	f, err := openRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	found, err := contains(io.LimitReader(f, install.MaxProgramBytes), []byte(name))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if !found {
		return fmt.Errorf("%s is %w: it is not %s", path, errNotKarmors, name)
	}
	return nil
}

// contains reports whether r holds needle, reading it in chunks.
func contains(r io.Reader, needle []byte) (bool, error) {
	buf := make([]byte, 0, 64<<10+len(needle))
	chunk := make([]byte, 64<<10)
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if bytes.Contains(buf, needle) {
			return true, nil
		}
		if keep := len(needle) - 1; len(buf) > keep {
			buf = append(buf[:0], buf[len(buf)-keep:]...)
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// Foreign is a file at one of karmor's paths that is not karmor's, left in place.
type Foreign struct {
	Path string
	Why  string
}

// Running is a process that runs a karmor-nri Uninstall looked at (its file may be gone).
type Running struct {
	PID int
	Exe string
}

// Removed says what Uninstall did.
type Removed struct {
	Removed []string  // files removed, in order
	Absent  []string  // karmor's paths where nothing was
	Left    []Foreign // files at karmor's paths that are not karmor's
	// UnitRemoved and PluginRemoved say which way of starting karmor-nri was taken away: the
	// running plugin then still needs stopping (systemd) or containerd restarting.
	UnitRemoved, PluginRemoved bool
	// Running are the karmor-nri processes still running: they keep adding karmor-hook to new
	// containers, so karmor-hook is kept while there are any.
	Running []Running
	// HookKept are the karmor-hook binaries kept because something still runs them.
	HookKept []KeptHook
}

// KeptHook is a karmor-hook Uninstall kept: karmor-nri processes run (Removed.Running), or the
// hooks.d files in UsedBy name it.
type KeptHook struct {
	Path   string
	UsedBy []string
}

// Uninstall removes what Install wrote, in the order that never leaves something running a
// file that is gone: first what makes containerd run karmor-nri (the pre-registered plugin and
// its configuration, the systemd unit), then the karmor-nri the unit ran, then karmor-hook.
// karmor-hook stays while a karmor-nri process still runs (it keeps adding the hook to new
// containers until it is stopped) or a hooks.d file in HooksDirs names it. Only karmor's files
// are removed: a file at one of these paths that is not (a directory, a symbolic link, a unit
// that does not run karmor-nri, a program that is not karmor's) is left and listed. Absent files
// are not an error.
func Uninstall(ctx context.Context, loc Locations) (*Removed, error) {
	if err := loc.check(); err != nil {
		return nil, err
	}
	res := &Removed{}
	var hookPaths, nriPaths []string
	if loc.PluginDir != "" {
		plugin, conf := loc.pluginFiles()
		nriPaths = append(nriPaths, plugin)
		if body, err := readOwnFile(conf, MaxConfigBytes); err == nil {
			if c, err := ParseConfig(body, Config{Hook: install.DefaultHookConfig()}); err == nil {
				hookPaths = append(hookPaths, c.Hook.Path)
			}
		}
		removed, err := res.remove(plugin, func(p string) error { return checkProgram(p, NRIProgram) })
		if err != nil {
			return res, err
		}
		res.PluginRemoved = removed
		if _, err := res.remove(conf, checkRegular); err != nil {
			return res, err
		}
	}
	unitNRI := loc.BinaryPath
	if loc.SystemdDir != "" {
		unit := loc.unitPath()
		u, err := readUnit(unit)
		if err == nil && u.program != "" {
			unitNRI = u.program
			if u.err == nil {
				hookPaths = append(hookPaths, u.options.Config.Hook.Path)
			}
		}
		if err == nil {
			if err := res.removeWantsLink(loc.wantsLink(), unit); err != nil {
				return res, err
			}
		}
		removed, err := res.remove(unit, func(p string) error { _, err := readUnit(p); return err })
		if err != nil {
			return res, err
		}
		res.UnitRemoved = removed
	}
	if unitNRI != "" {
		nriPaths = append(nriPaths, unitNRI)
		if _, err := res.remove(unitNRI, func(p string) error { return checkProgram(p, NRIProgram) }); err != nil {
			return res, fmt.Errorf("%w (what ran it is already gone)", err)
		}
	}

	if len(hookPaths) == 0 && loc.HookPath != "" {
		hookPaths = append(hookPaths, loc.HookPath)
	}
	res.Running = processesRunning(nriPaths)
	for _, hook := range dedupe(hookPaths) {
		users := hooksDirUsers(ctx, loc.HooksDirs, hook)
		if len(res.Running) > 0 || len(users) > 0 {
			res.HookKept = append(res.HookKept, KeptHook{Path: hook, UsedBy: users})
			continue
		}
		if _, err := res.remove(hook, func(p string) error { return checkProgram(p, install.HookProgram) }); err != nil {
			return res, fmt.Errorf("%w (karmor-nri is already gone)", err)
		}
	}
	return res, nil
}

// remove removes path when check says it is karmor's, and reports whether it did. A path with
// nothing at it, or with something that is not karmor's, is recorded, not an error.
func (r *Removed) remove(path string, check func(string) error) (bool, error) {
	err := check(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.Absent = append(r.Absent, path)
		return false, nil
	case errors.Is(err, errNotKarmors):
		r.Left = append(r.Left, Foreign{Path: path, Why: err.Error()})
		return false, nil
	case err != nil:
		return false, err
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			r.Absent = append(r.Absent, path)
			return false, nil
		}
		return false, fmt.Errorf("remove %s: %w", path, err)
	}
	r.Removed = append(r.Removed, path)
	return true, nil
}

// removeWantsLink removes the link `systemctl enable` made to unit, which would dangle once
// the unit is gone. A link to anything else is not karmor's and stays.
func (r *Removed) removeWantsLink(link, unit string) error {
	target, err := os.Readlink(link)
	if err != nil {
		return nil // no link, or not a link: systemctl enable was not run, or it is not ours
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	if filepath.Clean(target) != filepath.Clean(unit) {
		return nil
	}
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", link, err)
	}
	r.Removed = append(r.Removed, link)
	return nil
}

func checkRegular(path string) error {
	f, err := openRegular(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// hooksDirUsers lists the karmor hooks.d files in dirs whose hook is hookPath.
func hooksDirUsers(ctx context.Context, dirs []string, hookPath string) []string {
	var users []string
	for _, dir := range dirs {
		rep, err := install.Status(ctx, "", dir, "")
		if err != nil {
			continue
		}
		for _, f := range rep.Files {
			if f.Hook != nil && filepath.Clean(f.Hook.Path) == filepath.Clean(hookPath) {
				users = append(users, f.Path)
			}
		}
	}
	return users
}

// processesRunning lists the processes whose executable is one of paths, also after the file
// was removed (the kernel then shows it as "PATH (deleted)"). Processes it may not inspect are
// not listed.
func processesRunning(paths []string) []Running {
	want := map[string]bool{}
	for _, p := range paths {
		want[filepath.Clean(p)] = true
		if dir, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
			want[filepath.Join(dir, filepath.Base(p))] = true
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []Running
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		if want[strings.TrimSuffix(exe, " (deleted)")] {
			found = append(found, Running{PID: pid, Exe: exe})
		}
	}
	return found
}

func dedupe(paths []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		if p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// FileStatus is one of karmor's files as found.
type FileStatus struct {
	Path    string
	Present bool
	// Err says why a present file is not usable, or is not karmor's.
	Err error
}

// OK reports whether the file is present and usable.
func (f FileStatus) OK() bool { return f.Present && f.Err == nil }

// ProgramStatus is one of karmor's programs as found, with what `PROGRAM --version` says.
type ProgramStatus struct {
	FileStatus
	Version string
}

// StatusReport is what Status found.
type StatusReport struct {
	// Plugin and PluginConfig are the pre-registered karmor-nri and its configuration file
	// (zero Paths when the pre-registered way was not looked at).
	Plugin       ProgramStatus
	PluginConfig FileStatus
	// Unit is karmor-nri's systemd unit and UnitProgram the karmor-nri it runs (zero Paths when
	// the systemd way was not looked at; UnitProgram's is empty when the unit is absent).
	Unit        FileStatus
	UnitProgram ProgramStatus
	// Hook is karmor-hook: the one the installed plugin runs, or Locations.HookPath.
	Hook ProgramStatus
	// HookConfig is how the installed plugin runs karmor-hook, from its configuration file or
	// unit; nil when neither could be read.
	HookConfig *install.HookConfig
}

// Preregistered reports whether the pre-registered plugin and its configuration are in place.
func (r *StatusReport) Preregistered() bool { return r.Plugin.OK() && r.PluginConfig.OK() }

// Systemd reports whether the unit and the karmor-nri it runs are in place.
func (r *StatusReport) Systemd() bool { return r.Unit.OK() && r.UnitProgram.OK() }

// Installed reports whether karmor-hook and one way of starting karmor-nri are in place.
func (r *StatusReport) Installed() bool {
	return r.Hook.OK() && (r.Preregistered() || r.Systemd())
}

// Status reports what Install put in place: the pre-registered plugin and its configuration,
// the systemd unit and the karmor-nri it runs, and karmor-hook, with the programs' versions.
func Status(ctx context.Context, loc Locations) (*StatusReport, error) {
	if err := loc.check(); err != nil {
		return nil, err
	}
	rep := &StatusReport{}
	if loc.PluginDir != "" {
		plugin, conf := loc.pluginFiles()
		rep.Plugin = programStatus(ctx, plugin, NRIProgram)
		rep.PluginConfig = FileStatus{Path: conf}
		body, err := readOwnFile(conf, MaxConfigBytes)
		rep.PluginConfig.Present, rep.PluginConfig.Err = present(err)
		if err == nil {
			c, err := ParseConfig(body, Config{Hook: install.DefaultHookConfig()})
			if err != nil {
				rep.PluginConfig.Err = fmt.Errorf("%s: %w", conf, err)
			} else {
				rep.HookConfig = &c.Hook
			}
		}
	}
	if loc.SystemdDir != "" {
		rep.Unit = FileStatus{Path: loc.unitPath()}
		u, err := readUnit(rep.Unit.Path)
		rep.Unit.Present, rep.Unit.Err = present(err)
		if err == nil {
			program := loc.BinaryPath
			if u.program != "" {
				program = u.program
			}
			rep.Unit.Err = u.err
			rep.UnitProgram = programStatus(ctx, program, NRIProgram)
			if u.err == nil && rep.HookConfig == nil {
				rep.HookConfig = &u.options.Config.Hook
			}
		}
	}
	hook := loc.HookPath
	if rep.HookConfig != nil {
		hook = rep.HookConfig.Path
	}
	rep.Hook = programStatus(ctx, hook, install.HookProgram)
	return rep, nil
}

// present turns the error of reading a file into whether it is there and why it is not usable.
func present(err error) (bool, error) {
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return true, err
}

// programStatus looks at the named karmor program at path and asks it for its version.
func programStatus(ctx context.Context, path, name string) ProgramStatus {
	ps := ProgramStatus{FileStatus: FileStatus{Path: path}}
	err := checkProgram(path, name)
	if ps.Present, ps.Err = present(err); err != nil {
		return ps
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o111 == 0 {
		ps.Err = fmt.Errorf("%s is not executable", path)
		return ps
	}
	ps.Version, ps.Err = install.ProgramVersion(ctx, path, name)
	return ps
}
