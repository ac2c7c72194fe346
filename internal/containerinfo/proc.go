package containerinfo

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// NamespaceKinds are the namespaces recorded for each container, as named under /proc/<pid>/ns.
var NamespaceKinds = []string{"pid", "mnt", "net", "uts", "ipc", "cgroup"}

// DefaultProcRoot is the host's /proc.
const DefaultProcRoot = "/proc"

// procFileLimit bounds the /proc files read here; /proc/<pid>/cgroup is a few hundred bytes even
// on large machines.
const procFileLimit = 256 << 10

// userHZ is the unit of /proc/<pid>/stat's start time. It is 100 on every Linux architecture
// Go supports (the kernel's USER_HZ, independent of CONFIG_HZ).
const userHZ = 100

// ErrPIDReused is returned by ReadProc when the pid's start time changed while reading, i.e. the
// process exited and its pid went to another process.
var ErrPIDReused = errors.New("pid exited and was reused while reading /proc")

// ReadProc fills c's PIDStart, Namespaces and CgroupPath (and Created when unset) from
// procRoot/<pid>. It reads the start time before and after the rest, so that values read from a
// reused pid are never reported as the container's.
func ReadProc(procRoot string, pid int, c *agentapi.Container) error {
	if pid <= 0 {
		return fmt.Errorf("no pid to read /proc for (pid %d)", pid)
	}
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	start, err := PIDStartTime(procRoot, pid)
	if err != nil {
		return err
	}
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	ns := make(map[string]uint64, len(NamespaceKinds))
	var errs []error
	for _, kind := range NamespaceKinds {
		ino, err := namespaceInode(filepath.Join(dir, "ns", kind))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ns[kind] = ino
	}
	cgroup, cgErr := readCgroupPath(filepath.Join(dir, "cgroup"))
	if cgErr != nil {
		errs = append(errs, cgErr)
	}
	again, err := PIDStartTime(procRoot, pid)
	if err != nil {
		return err
	}
	if again != start {
		return fmt.Errorf("pid %d: %w", pid, ErrPIDReused)
	}
	c.PIDStart = start
	if len(ns) > 0 {
		c.Namespaces = ns
	}
	if cgroup != "" {
		c.CgroupPath = cgroup
	}
	if c.Created.IsZero() {
		if boot, err := BootTime(procRoot); err == nil {
			c.Created = boot.Add(time.Duration(start) * time.Second / userHZ).UTC()
		}
	}
	return errors.Join(errs...)
}

// PIDStat is what karmor reads of /proc/<pid>/stat.
type PIDStat struct {
	// State is field 3: R, S, D, Z (zombie), X (dead), ...
	State byte
	// Start is field 22: the process's start time in clock ticks after boot. With the pid it
	// names one process for the life of the system, as a pid alone does not.
	Start uint64
}

// Gone reports whether the process has exited and only waits to be reaped (or is being).
func (s PIDStat) Gone() bool { return s.State == 'Z' || s.State == 'X' }

// ReadPIDStat reads procRoot/<pid>/stat.
func ReadPIDStat(procRoot string, pid int) (PIDStat, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	path := filepath.Join(procRoot, strconv.Itoa(pid), "stat")
	body, err := ReadRegularFile(path, 4096)
	if err != nil {
		return PIDStat{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	st, err := parseStat(body)
	if err != nil {
		return PIDStat{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// PIDStartTime returns field 22 of procRoot/<pid>/stat: the process's start time in clock ticks
// after boot.
func PIDStartTime(procRoot string, pid int) (uint64, error) {
	st, err := ReadPIDStat(procRoot, pid)
	return st.Start, err
}

// parseStat extracts fields 3 and 22 of a /proc/<pid>/stat line. The second field, the command
// name in parentheses, may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseStat(line []byte) (PIDStat, error) {
	end := bytes.LastIndexByte(line, ')')
	if end < 0 {
		return PIDStat{}, errors.New("malformed stat: no command name")
	}
	// After ") " come fields 3 (state) onwards; start time is field 22, the 20th of these.
	fields := strings.Fields(string(line[end+1:]))
	if len(fields) < 20 || len(fields[0]) != 1 {
		return PIDStat{}, fmt.Errorf("malformed stat: %d fields after the command name, want at least 20", len(fields))
	}
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return PIDStat{}, fmt.Errorf("malformed stat start time: %w", err)
	}
	return PIDStat{State: fields[0][0], Start: v}, nil
}

// namespaceInode reads a /proc/<pid>/ns/<kind> link, whose target is "<kind>:[<inode>]".
func namespaceInode(path string) (uint64, error) {
	target, err := os.Readlink(path)
	if err != nil {
		return 0, err
	}
	open := strings.IndexByte(target, '[')
	if open < 0 || !strings.HasSuffix(target, "]") {
		return 0, fmt.Errorf("%s: unexpected namespace link %q", path, target)
	}
	ino, err := strconv.ParseUint(target[open+1:len(target)-1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: unexpected namespace link %q", path, target)
	}
	return ino, nil
}

// readCgroupPath returns the process's cgroup from procRoot/<pid>/cgroup.
func readCgroupPath(path string) (string, error) {
	body, err := ReadRegularFile(path, procFileLimit)
	if err != nil {
		return "", err
	}
	return ParseCgroupFile(body), nil
}

// cgroupV1Preference orders the v1 hierarchies consulted when the unified one says nothing. Every
// runtime puts a container in these; "name=systemd" is last because it is often left at a
// parent.
var cgroupV1Preference = []string{"pids", "memory", "cpu", "cpu,cpuacct", "devices", "name=systemd"}

// ParseCgroupFile picks a process's cgroup path from the contents of /proc/<pid>/cgroup: the
// unified hierarchy's ("0::/path") when it is not the root, else the first of the usual v1
// controllers with a path (hybrid hosts, where the unified mount is empty), else "".
func ParseCgroupFile(body []byte) string {
	v1 := map[string]string{}
	var unified string
	for line := range strings.SplitSeq(string(body), "\n") {
		// hierarchy-ID:controller-list:cgroup-path; the path may contain ':'.
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok || path == "" {
			continue
		}
		if id == "0" && controllers == "" {
			unified = path
			continue
		}
		for ctl := range strings.SplitSeq(controllers, ",") {
			v1[ctl] = path
		}
		v1[controllers] = path
	}
	if unified != "" && unified != "/" {
		return unified
	}
	for _, ctl := range cgroupV1Preference {
		if p := v1[ctl]; p != "" && p != "/" {
			return p
		}
	}
	return unified
}

// BootTime returns when the host booted, from procRoot/uptime: now minus the uptime, which is
// precise to 10 ms (stat's btime line is truncated to whole seconds). Process start times in
// /proc/<pid>/stat count from the same clock.
func BootTime(procRoot string) (time.Time, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	body, err := ReadRegularFile(filepath.Join(procRoot, "uptime"), procFileLimit)
	if err != nil {
		return time.Time{}, fmt.Errorf("read boot time: %w", err)
	}
	now := time.Now()
	field, _, _ := strings.Cut(strings.TrimSpace(string(body)), " ")
	secs, err := strconv.ParseFloat(field, 64)
	if err != nil || secs < 0 {
		return time.Time{}, fmt.Errorf("read boot time: malformed uptime %q", body)
	}
	return now.Add(-time.Duration(secs * float64(time.Second))).Round(10 * time.Millisecond), nil
}

// CapLastCap returns the highest capability number the kernel knows
// (procRoot/sys/kernel/cap_last_cap).
func CapLastCap(procRoot string) (int, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	body, err := ReadRegularFile(filepath.Join(procRoot, "sys", "kernel", "cap_last_cap"), 64)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(body)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("malformed cap_last_cap %q", body)
	}
	return n, nil
}

var hostCapLastCap = sync.OnceValue(func() int {
	if n, err := CapLastCap(DefaultProcRoot); err == nil {
		return n
	}
	return len(capNames) - 1
})

// HostCapLastCap is CapLastCap of the host's /proc, read once; when it cannot be read, the
// highest capability this program knows.
func HostCapLastCap() int { return hostCapLastCap() }
