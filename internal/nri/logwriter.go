package nri

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// LogWriter is the destination of karmor-nri's log lines, which can move to a file while the
// plugin runs (see Config.PluginLogFile).
type LogWriter struct {
	mu   sync.Mutex
	w    io.Writer
	file *os.File
}

// NewLogWriter writes to w until OpenFile is called.
func NewLogWriter(w io.Writer) *LogWriter { return &LogWriter{w: w} }

func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// OpenFile appends further lines to path (created 0600), closing a file opened before. On error
// the destination is unchanged.
func (l *LogWriter) OpenFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		l.file.Close()
	}
	l.w, l.file = f, f
	return nil
}

// Close closes the log file, if one was opened.
func (l *LogWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file = nil
	l.w = io.Discard
	return err
}
