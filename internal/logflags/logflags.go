// Package logflags gives karmor's daemons (karmord, karmor-controller) the same --log-level and
// --log-format flags, and the slog logger they choose, so that operators configure and parse
// the logs of both alike.
package logflags

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// Flags holds the values of --log-level and --log-format.
type Flags struct {
	Level, Format string
}

// Register adds --log-level (default info) and --log-format (default text) to f.
func (l *Flags) Register(f *pflag.FlagSet) {
	f.StringVar(&l.Level, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&l.Format, "log-format", "text", "log format: text or json")
}

// Logger returns the logger the flags ask for, writing to w, or an error naming the flag
// whose value is not one of the choices.
func (l Flags) Logger(w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.Level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(l.Format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.Format)
}
