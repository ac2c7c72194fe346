package agentapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The spool is a directory of events the hook could not deliver. Each event is one file holding
// an Envelope's JSON, written to a temporary name and renamed into place, so the agent never
// reads half a file. Names start with the event time in nanoseconds, zero-padded, so that sorting
// names replays events in the order they happened.
const (
	spoolSuffix    = ".event"
	spoolTmpPrefix = ".tmp-"
	spoolBadSuffix = ".bad"
)

// SpoolEvent writes ev into dir atomically and returns the file's path.
// dir is created (0700) when missing.
func SpoolEvent(dir string, ev *Event) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	body, err := json.Marshal(&Envelope{V: Version, Type: TypeEvent, Event: ev})
	if err != nil {
		return "", fmt.Errorf("spool: encode: %w", err)
	}
	f, err := os.CreateTemp(dir, spoolTmpPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
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
		return "", fmt.Errorf("spool: write %s: %w", tmp, err)
	}
	t := ev.Time
	if t.IsZero() {
		t = time.Now()
	}
	// The temp name's random part keeps two events of the same nanosecond and id apart.
	name := fmt.Sprintf("%020d-%s-%s-%s%s", t.UnixNano(), ev.Kind, safeName(ev.Container.ID), strings.TrimPrefix(filepath.Base(tmp), spoolTmpPrefix), spoolSuffix)
	final := filepath.Join(dir, name)
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("spool: %w", err)
	}
	return final, nil
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

// SpoolEntry is one spooled event file.
type SpoolEntry struct {
	Path  string
	Event *Event // nil when Err is set
	Err   error  // the file could not be read or decoded
}

// ReadSpool returns the spooled events in dir, oldest first. Files that cannot be decoded are
// returned with Err set so the caller can quarantine them; temporary files are skipped.
// A missing dir is an empty spool.
func ReadSpool(dir string) ([]SpoolEntry, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), spoolSuffix) && !strings.HasPrefix(e.Name(), spoolTmpPrefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	out := make([]SpoolEntry, 0, len(names))
	for _, n := range names {
		p := filepath.Join(dir, n)
		ev, err := readSpoolFile(p)
		out = append(out, SpoolEntry{Path: p, Event: ev, Err: err})
	}
	return out, nil
}

func readSpoolFile(path string) (*Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, MaxFrame+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxFrame {
		return nil, fmt.Errorf("%w: spool file %s", ErrFrameTooLarge, path)
	}
	env, err := DecodeEnvelope(body)
	if err != nil {
		return nil, err
	}
	if env.Type != TypeEvent {
		return nil, fmt.Errorf("agentapi: spool file holds a %q message, want %q", env.Type, TypeEvent)
	}
	return env.Event, nil
}

// Quarantine renames a spool file that could not be applied so it is kept for inspection but not
// replayed again.
func Quarantine(path string) error {
	return os.Rename(path, path+spoolBadSuffix)
}
