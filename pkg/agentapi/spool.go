package agentapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The spool is a directory of events the hook could not deliver. Each event is one file holding
// an Envelope's JSON, written to a temporary name and renamed into place, so the agent never
// reads half a file. Names are <time in nanoseconds, 20 digits>-<kind>-<size>-<id part>-<random>.event,
// so that sorting names replays events in the order they happened, and the kind and size of each
// file are known from a directory listing alone: a hook checking the cap stats no file.
//
// The spool is capped (SpoolLimits): a hook that finds it full removes the oldest spooled start
// to make room, never a stop, and drops its own event when no start is left to remove. Every
// event removed or dropped is counted in the file SpoolDroppedFile, which karmord exports.
const (
	spoolSuffix    = ".event"
	spoolTmpPrefix = ".tmp-"
	spoolBadSuffix = ".bad"
	// SpoolDroppedFile, in the spool directory, holds how many events hooks dropped because the
	// spool was full: a decimal number, zero-padded to 20 digits and a newline. Hooks hold an
	// exclusive flock on the spool directory while they make room and count.
	SpoolDroppedFile = "dropped"
	spoolTimeDigits  = 20
)

// SpoolLimits caps the spool: at most Files event files of at most Bytes in total.
type SpoolLimits struct {
	Files int
	Bytes int64
}

// DefaultSpoolLimits hold about an hour of a busy node's container churn while karmord is away,
// and keep a runaway spool from filling /var.
var DefaultSpoolLimits = SpoolLimits{Files: 4096, Bytes: 256 << 20}

// ErrSpoolFull is returned when an event was dropped because the spool was full of stops.
var ErrSpoolFull = errors.New("spool full")

// lockAttempts and lockWait bound how long a hook waits for another hook's lock on the spool
// (each holds it for the time of a directory scan). After that it spools without the lock: the
// cap may then be passed by the few events spooled at the same moment.
const (
	lockAttempts = 100
	lockWait     = 2 * time.Millisecond
)

// Spooled is what Spool did.
type Spooled struct {
	// Path is where the event was written; empty when it was dropped (ErrSpoolFull).
	Path string
	// Evicted are the older spooled starts removed to make room for it.
	Evicted []string
}

// SpoolEvent writes ev into dir within DefaultSpoolLimits and returns the file's path.
func SpoolEvent(dir string, ev *Event) (string, error) {
	s, err := Spool(dir, ev, DefaultSpoolLimits)
	return s.Path, err
}

// Spool writes ev into dir atomically, within limits (see the package's spool notes). dir is
// created (0700) when missing.
func Spool(dir string, ev *Event, limits SpoolLimits) (Spooled, error) {
	var out Spooled
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return out, fmt.Errorf("spool: %w", err)
	}
	body, err := json.Marshal(&Envelope{V: Version, Type: TypeEvent, Event: ev})
	if err != nil {
		return out, fmt.Errorf("spool: encode: %w", err)
	}
	unlock := lockSpool(dir)
	evicted, room, err := makeRoom(dir, int64(len(body)), limits)
	out.Evicted = evicted
	dropped := len(evicted)
	if !room {
		dropped++
	}
	if dropped > 0 {
		if cerr := addDropped(dir, uint64(dropped)); err == nil {
			err = cerr
		}
	}
	unlock()
	if !room {
		return out, fmt.Errorf("spool: %w (limits %d files, %d bytes) and holds only stops: the %s of %s is dropped",
			ErrSpoolFull, limits.Files, limits.Bytes, ev.Kind, ev.Container.ID)
	}
	if err != nil {
		return out, fmt.Errorf("spool: %w", err)
	}
	f, err := os.CreateTemp(dir, spoolTmpPrefix+"*")
	if err != nil {
		return out, fmt.Errorf("spool: %w", err)
	}
	tmp := f.Name()
	// No fsync: it costs milliseconds on every container start while the agent is away, and a
	// spooled event only matters until the next reboot, which ends every container it describes.
	// The rename still keeps readers from ever seeing half a file.
	_, err = f.Write(body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return out, fmt.Errorf("spool: write %s: %w", tmp, err)
	}
	t := ev.Time
	if t.IsZero() {
		t = time.Now()
	}
	// The temp name's random part keeps two events of the same nanosecond and id apart.
	name := fmt.Sprintf("%0*d-%s-%d-%s-%s%s", spoolTimeDigits, max(t.UnixNano(), 0), safeName(ev.Kind), len(body),
		safeName(ev.Container.ID), strings.TrimPrefix(filepath.Base(tmp), spoolTmpPrefix), spoolSuffix)
	final := filepath.Join(dir, name)
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return out, fmt.Errorf("spool: %w", err)
	}
	out.Path = final
	return out, nil
}

// makeRoom removes the oldest spooled starts until an event of size bytes fits within limits.
// It reports the files removed and whether the event now fits; it never removes a stop.
func makeRoom(dir string, size int64, limits SpoolLimits) (evicted []string, room bool, err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, true, err // spool anyway: a full disk will say so
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, true, err
	}
	var files int
	var total int64
	var starts []string // sorted below: oldest first
	sizes := map[string]int64{}
	for _, name := range names {
		if !isSpoolName(name) {
			continue
		}
		n, ok := ParseSpoolName(name)
		size := n.Size
		if !ok || size < 0 {
			// Named by an older karmor-hook: only its size costs a stat.
			info, err := os.Lstat(filepath.Join(dir, name))
			if err != nil {
				continue
			}
			size = info.Size()
		}
		files++
		total += size
		if ok && n.Kind == KindStart {
			starts = append(starts, name)
			sizes[name] = size
		}
	}
	sort.Strings(starts)
	for files+1 > limits.Files || total+size > limits.Bytes {
		if len(starts) == 0 {
			return evicted, false, nil
		}
		victim := starts[0]
		starts = starts[1:]
		if err := os.Remove(filepath.Join(dir, victim)); err != nil {
			continue // karmord applied it meanwhile, or another hook took it
		}
		evicted = append(evicted, filepath.Join(dir, victim))
		files--
		total -= sizes[victim]
	}
	return evicted, true, nil
}

// lockSpool takes an exclusive flock on the spool directory, waiting a bounded time, and returns
// its release. Without the lock (another hook holds it too long, or the directory cannot be
// opened) it returns a no-op: spooling never waits on it for long.
func lockSpool(dir string) (unlock func()) {
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return func() {}
	}
	for range lockAttempts {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return func() { f.Close() } // closing releases the lock
		} else if !errors.Is(err, syscall.EWOULDBLOCK) {
			break
		}
		time.Sleep(lockWait)
	}
	f.Close()
	return func() {}
}

// addDropped adds n to the spool's dropped-events count. The caller holds the spool's lock.
func addDropped(dir string, n uint64) error {
	path := filepath.Join(dir, SpoolDroppedFile)
	count, err := SpoolDropped(dir)
	if err != nil {
		count = 0 // a damaged count restarts rather than blocking every later count
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	// Always the same width at offset 0: a reader never sees a shorter, truncated number.
	_, err = f.WriteAt([]byte(fmt.Sprintf("%0*d\n", spoolTimeDigits, count+n)), 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// SpoolDropped returns the spool's dropped-events count (0 when there is no count yet).
func SpoolDropped(dir string) (uint64, error) {
	f, err := os.OpenFile(filepath.Join(dir, SpoolDroppedFile), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(body))
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("spool: malformed %s: %w", SpoolDroppedFile, err)
	}
	return n, nil
}

// safeName keeps a short, file-name-safe part of a container id for readable spool names.
func safeName(id string) string {
	var b strings.Builder
	for _, r := range id {
		if b.Len() >= 32 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// SpoolName is what a spool file's name says about its event.
type SpoolName struct {
	Time int64 // Unix nanoseconds
	Kind string
	Size int64 // the file's size in bytes; -1 when the name does not say (older hooks)
}

// ParseSpoolName reads a spool file's name, as Spool writes them (and as older hooks did,
// without the size).
func ParseSpoolName(name string) (SpoolName, bool) {
	if !isSpoolName(name) || len(name) < spoolTimeDigits+2 || name[spoolTimeDigits] != '-' {
		return SpoolName{}, false
	}
	t, err := strconv.ParseInt(name[:spoolTimeDigits], 10, 64)
	if err != nil || t < 0 {
		return SpoolName{}, false
	}
	fields := strings.Split(strings.TrimSuffix(name[spoolTimeDigits+1:], spoolSuffix), "-")
	if fields[0] == "" {
		return SpoolName{}, false
	}
	n := SpoolName{Time: t, Kind: fields[0], Size: -1}
	if len(fields) == 4 { // kind, size, id, random
		if size, err := strconv.ParseInt(fields[1], 10, 64); err == nil && size >= 0 {
			n.Size = size
		}
	}
	return n, true
}

func isSpoolName(name string) bool {
	return strings.HasSuffix(name, spoolSuffix) && !strings.HasPrefix(name, spoolTmpPrefix)
}

// SpoolFiles returns the paths of the spooled event files in dir, oldest first, without reading
// them: karmord reads and applies one at a time (ReadSpoolFile). Temporary files are skipped.
// A missing dir is an empty spool.
func SpoolFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && isSpoolName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = filepath.Join(dir, n)
	}
	return paths, nil
}

// SpoolEntry is one spooled event file.
type SpoolEntry struct {
	Path  string
	Event *Event // nil when Err is set
	Err   error  // the file could not be read or decoded
}

// ReadSpool returns every spooled event in dir, oldest first, for tools and tests that inspect a
// small spool; karmord walks SpoolFiles instead. Files that cannot be decoded are returned with
// Err set.
func ReadSpool(dir string) ([]SpoolEntry, error) {
	paths, err := SpoolFiles(dir)
	if err != nil {
		return nil, err
	}
	out := make([]SpoolEntry, 0, len(paths))
	for _, p := range paths {
		ev, err := ReadSpoolFile(p)
		out = append(out, SpoolEntry{Path: p, Event: ev, Err: err})
	}
	return out, nil
}

// ReadSpoolFile reads and decodes one spooled event of at most MaxFrame bytes, without
// following a symlink or blocking on a FIFO.
func ReadSpoolFile(path string) (*Event, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("agentapi: spool file %s is not a regular file", path)
	}
	body, err := io.ReadAll(io.LimitReader(f, MaxFrame+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxFrame {
		return nil, fmt.Errorf("%w: spool file %s", ErrFrameTooLarge, path)
	}
	return DecodeSpoolRecord(body)
}

// DecodeSpoolRecord decodes one spool file's content: an event envelope.
func DecodeSpoolRecord(body []byte) (*Event, error) {
	env, err := DecodeEnvelope(body)
	if err != nil {
		return nil, err
	}
	if env.Type != TypeEvent || env.Event == nil {
		return nil, fmt.Errorf("agentapi: spool file holds a %q message, want %q", env.Type, TypeEvent)
	}
	return env.Event, nil
}

// Quarantine renames a spool file that could not be applied so it is kept for inspection but not
// replayed again.
func Quarantine(path string) error {
	return os.Rename(path, path+spoolBadSuffix)
}
