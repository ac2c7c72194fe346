package agent

import (
	"errors"
	"os"

	"github.com/karmor/karmor/internal/containerinfo"
	"github.com/karmor/karmor/pkg/agentapi"
)

// drainSpool applies the spooled events oldest first (Source=spool), reading and applying one
// file at a time so that a large spool never sits in memory, and deletes each file once applied;
// a file that does not decode is quarantined (renamed *.bad) and logged. A spooled start whose
// process is already gone is dropped rather than applied: the container it describes no longer
// exists, and its stop may have been lost with the agent. It runs at start and then every
// SpoolScanInterval, so that events spooled by hooks that timed out against a busy agent are
// still applied. It also exports the count of events hooks dropped from a full spool. It returns
// how many files were applied and quarantined.
func (a *Agent) drainSpool() (applied, quarantined int) {
	if n, err := agentapi.SpoolDropped(a.cfg.SpoolDir); err != nil {
		a.log.Warn("cannot read the spool's dropped-events count", "dir", a.cfg.SpoolDir, "err", err)
	} else {
		a.metrics.spoolDropped.Set(float64(n))
	}
	paths, err := agentapi.SpoolFiles(a.cfg.SpoolDir)
	if err != nil {
		a.metrics.errors.WithLabelValues(errKindSpool).Inc()
		a.log.Error("cannot read the spool; events left by hooks wait there", "dir", a.cfg.SpoolDir, "err", err)
		return 0, 0
	}
	for _, path := range paths {
		if a.stuckSpool[path] {
			continue
		}
		event, err := agentapi.ReadSpoolFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // a hook removed it to make room
		}
		if err != nil {
			a.metrics.spoolReplays.WithLabelValues("quarantined").Inc()
			quarantined++
			if qerr := agentapi.Quarantine(path); qerr != nil {
				a.stuckSpool[path] = true
				a.metrics.errors.WithLabelValues(errKindSpool).Inc()
				a.log.Error("cannot quarantine an undecodable spool file; remove it by hand", "file", path, "decode_err", err, "err", qerr)
				continue
			}
			a.log.Warn("quarantined an undecodable spool file", "file", path+".bad", "err", err)
			continue
		}
		ev := *event
		ev.Source = agentapi.SourceSpool
		if ev.Kind == agentapi.KindStart && !a.alive(ev.Container.PID, ev.Container.PIDStart) {
			a.metrics.spoolReplays.WithLabelValues("stale").Inc()
			a.log.Debug("spooled start of a container that is gone; dropped", "id", ev.Container.ID, "pid", ev.Container.PID)
		} else {
			a.apply(ev)
			a.metrics.spoolReplays.WithLabelValues("applied").Inc()
			applied++
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.stuckSpool[path] = true
			a.metrics.errors.WithLabelValues(errKindSpool).Inc()
			a.log.Error("applied a spooled event but cannot remove its file; remove it by hand", "file", path, "err", err)
		}
	}
	if len(a.stuckSpool) > 0 {
		a.forgetRemovedStuck()
	}
	return applied, quarantined
}

// forgetRemovedStuck drops stuck files someone has since removed, so the set stays small.
func (a *Agent) forgetRemovedStuck() {
	for p := range a.stuckSpool {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			delete(a.stuckSpool, p)
		}
	}
}

// alive reports whether pid still runs the process that started at pidStart (clock ticks after
// boot; 0 when unknown). An unknown pid counts as alive: nothing says otherwise. A /proc that
// cannot be read for another reason than the pid's absence counts as alive too, so that a
// permission problem never empties the table. A zombie is dead: a container's init that exited
// stays a zombie until its parent (often not the runtime) reaps it, and runc itself reports such
// a container as stopped.
func (a *Agent) alive(pid int, pidStart uint64) bool {
	if pid <= 0 {
		return true
	}
	st, err := containerinfo.ReadPIDStat(a.cfg.ProcRoot, pid)
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	if pidStart != 0 && st.Start != pidStart {
		return false
	}
	return !st.Gone()
}
