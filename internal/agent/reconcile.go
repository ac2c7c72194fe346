package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/internal/containerinfo"
	"github.com/karmor/karmor/pkg/agentapi"
)

// Reconciliation compares the table with what the runtimes left on disk and what /proc says,
// read-only and without any runtime socket:
//
//   - runc keeps <root>/<id>/state.json: {"id", "init_process_pid", "init_process_start" (clock
//     ticks after boot, as /proc/<pid>/stat field 22), "created", "config": {"labels":
//     ["bundle=<path>", ...]}, ...};
//   - crun keeps <root>/<id>/status: {"pid", "process-start-time", "bundle", "created", ...}.
//
// A container is live when its init pid still runs the process that started at the recorded time,
// so a pid reused by another process is not mistaken for it. Live containers the table lacks are
// added (Source=reconcile) with what containerinfo reads from their bundle and /proc; table
// entries whose process is gone are removed.

// maxRuntimeStateBytes bounds one state file: runc's holds the container's whole libcontainer
// config (a few KiB, more with big seccomp profiles).
const maxRuntimeStateBytes = 8 << 20

// runtimeContainer is what one runtime state file says.
type runtimeContainer struct {
	ID       string
	PID      int
	PIDStart uint64
	Created  time.Time
	Bundle   string
	Path     string // the state file, for logs
}

// runcState is the part of runc's state.json karmord reads.
type runcState struct {
	ID               string        `json:"id"`
	InitProcessPID   int           `json:"init_process_pid"`
	InitProcessStart flexibleUint  `json:"init_process_start"`
	Created          time.Time     `json:"created"`
	Config           runcStateConf `json:"config"`
}

type runcStateConf struct {
	Labels []string `json:"labels"`
}

// crunStatus is the part of crun's status file karmord reads.
type crunStatus struct {
	PID              int          `json:"pid"`
	ProcessStartTime flexibleUint `json:"process-start-time"`
	Bundle           string       `json:"bundle"`
	Created          time.Time    `json:"created"`
}

// flexibleUint decodes a number or a decimal string: runc before 1.0 wrote the start time as a
// string.
type flexibleUint uint64

func (f *flexibleUint) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("start time %s is not a non-negative integer", truncate(string(b), 32))
	}
	*f = flexibleUint(v)
	return nil
}

// readRuntimeStates lists the containers in the state roots (glob patterns expanded now). Missing
// roots are normal (a runtime not installed); unreadable or malformed entries are returned as
// errors and skipped.
func readRuntimeStates(patterns []string) ([]runtimeContainer, []error) {
	var out []runtimeContainer
	var errs []error
	seen := map[string]bool{}
	for _, pattern := range patterns {
		roots, err := filepath.Glob(pattern)
		if err != nil {
			errs = append(errs, fmt.Errorf("runtime root %s: %w", pattern, err))
			continue
		}
		for _, root := range roots {
			if seen[root] {
				continue
			}
			seen[root] = true
			ents, err := os.ReadDir(root)
			if err != nil {
				if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
					errs = append(errs, fmt.Errorf("runtime root %s: %w", root, err))
				}
				continue
			}
			for _, e := range ents {
				if !e.IsDir() {
					continue
				}
				rc, err := readRuntimeState(filepath.Join(root, e.Name()))
				if err != nil {
					if !errors.Is(err, os.ErrNotExist) {
						errs = append(errs, err)
					}
					continue
				}
				out = append(out, rc)
			}
		}
	}
	return out, errs
}

// readRuntimeState reads one container directory: runc's state.json, else crun's status.
// os.ErrNotExist means the directory holds neither (or the container went away meanwhile).
func readRuntimeState(dir string) (runtimeContainer, error) {
	id := filepath.Base(dir)
	rc := runtimeContainer{ID: id}
	if body, err := containerinfo.ReadRegularFile(filepath.Join(dir, "state.json"), maxRuntimeStateBytes); err == nil {
		rc.Path = filepath.Join(dir, "state.json")
		var st runcState
		if err := json.Unmarshal(body, &st); err != nil {
			return rc, fmt.Errorf("%s: malformed runc state: %w", rc.Path, err)
		}
		if st.ID != id {
			return rc, fmt.Errorf("%s: state is for container %q, not %q", rc.Path, truncate(st.ID, 64), id)
		}
		rc.PID, rc.PIDStart, rc.Created = st.InitProcessPID, uint64(st.InitProcessStart), st.Created
		for _, l := range st.Config.Labels {
			if v, ok := strings.CutPrefix(l, "bundle="); ok {
				rc.Bundle = v
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return rc, err
	} else {
		rc.Path = filepath.Join(dir, "status")
		body, err := containerinfo.ReadRegularFile(rc.Path, maxRuntimeStateBytes)
		if err != nil {
			return rc, err
		}
		var st crunStatus
		if err := json.Unmarshal(bytes.TrimSpace(body), &st); err != nil {
			return rc, fmt.Errorf("%s: malformed crun status: %w", rc.Path, err)
		}
		rc.PID, rc.PIDStart, rc.Created, rc.Bundle = st.PID, uint64(st.ProcessStartTime), st.Created, st.Bundle
	}
	if rc.PID < 0 {
		return rc, fmt.Errorf("%s: negative pid %d", rc.Path, rc.PID)
	}
	if len(rc.ID) > 1024 {
		return rc, fmt.Errorf("%s: container id longer than 1024 bytes", rc.Path)
	}
	return rc, nil
}

// reconcile adds the live containers the table lacks and removes the entries whose process is
// gone; it also forgets old tombstones. It returns how many containers it added and removed.
func (a *Agent) reconcile() (nAdded, nRemoved int) {
	now := time.Now()
	states, errs := readRuntimeStates(a.cfg.RuntimeRoots)
	for _, err := range errs {
		a.metrics.errors.WithLabelValues(errKindReconcile).Inc()
		a.log.Warn("reconcile: skipped a runtime state entry", "err", err)
	}
	result := "ok"
	if len(errs) > 0 {
		result = "error"
	}
	a.metrics.reconcileRuns.WithLabelValues(result).Inc()

	a.mu.Lock()
	known := make(map[string]bool, len(a.table.live))
	for id := range a.table.live {
		known[id] = true
	}
	a.mu.Unlock()
	sort.Slice(states, func(i, j int) bool { return states[i].Created.Before(states[j].Created) })
	for _, rc := range states {
		if known[rc.ID] || rc.PID <= 0 || rc.PIDStart == 0 || !a.alive(rc.PID, rc.PIDStart) {
			continue
		}
		c, ok := a.describe(rc)
		if !ok {
			continue
		}
		created := rc.Created
		if created.IsZero() {
			created = now
		}
		if v, _ := a.apply(agentapi.Event{Kind: agentapi.KindStart, Stage: "reconcile", Time: created, Source: agentapi.SourceReconcile, Container: c}); v == added {
			a.metrics.reconcile.WithLabelValues("added").Inc()
			nAdded++
		}
	}

	type suspect struct {
		id       string
		pid      int
		pidStart uint64
	}
	var suspects []suspect
	a.mu.Lock()
	for id, e := range a.table.live {
		suspects = append(suspects, suspect{id, e.c.PID, e.c.PIDStart})
	}
	a.mu.Unlock()
	for _, s := range suspects {
		if a.alive(s.pid, s.pidStart) {
			continue
		}
		stop := agentapi.Event{Kind: agentapi.KindStop, Stage: "reconcile", Time: time.Now(), Source: agentapi.SourceReconcile,
			Container: agentapi.Container{ID: s.id, PID: s.pid, PIDStart: s.pidStart}}
		if v, _ := a.apply(stop); v == removed {
			a.metrics.reconcile.WithLabelValues("removed").Inc()
			nRemoved++
		}
	}

	a.mu.Lock()
	a.table.pruneTombstones(now, a.cfg.TombstoneTTL, a.cfg.MaxTombstones)
	a.mu.Unlock()
	if nAdded > 0 || nRemoved > 0 {
		a.log.Info("reconciled with runtime state", "added", nAdded, "removed", nRemoved)
	}
	return nAdded, nRemoved
}

// describe builds a container from its runtime state, its bundle's config.json and /proc, as the
// hook would have. What cannot be read is logged and left out: an entry with an id and a pid is
// better than none. It reports false when the process turned out to be gone or another one.
func (a *Agent) describe(rc runtimeContainer) (agentapi.Container, bool) {
	var spec *rspec.Spec
	if rc.Bundle != "" {
		var err error
		if spec, err = containerinfo.ReadSpec(rc.Bundle); err != nil {
			a.log.Debug("reconcile: bundle config unreadable", "id", rc.ID, "bundle", rc.Bundle, "err", err)
		}
	}
	state := &rspec.State{ID: rc.ID, Pid: rc.PID, Bundle: rc.Bundle, Status: rspec.StateRunning}
	c := containerinfo.FromOCI(state, spec)
	if c.Created.IsZero() {
		c.Created = rc.Created.UTC()
	}
	if err := containerinfo.ReadProc(a.cfg.ProcRoot, rc.PID, &c); err != nil {
		a.log.Debug("reconcile: /proc incomplete", "id", rc.ID, "pid", rc.PID, "err", err)
	}
	// The process may have exited while it was being read; what was read must not be kept then.
	if !a.alive(rc.PID, rc.PIDStart) || c.PIDStart != 0 && c.PIDStart != rc.PIDStart {
		return c, false
	}
	c.PIDStart = rc.PIDStart
	if err := containerinfo.ReadLibpodIdentity(&c); err != nil {
		a.log.Debug("reconcile: podman identity unreadable", "id", rc.ID, "err", err)
	}
	return c, true
}
