package logflags

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestFlagsChooseTheLogger(t *testing.T) {
	var l Flags
	f := pflag.NewFlagSet("test", pflag.ContinueOnError)
	l.Register(f)
	if err := f.Parse([]string{"--log-level", "warn", "--log-format", "JSON"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	logger, err := l.Logger(&out)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("dropped")
	logger.Warn("kept", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil || rec["msg"] != "kept" || rec["k"] != "v" {
		t.Fatalf("want one JSON record of the warning, got %q (%v)", out.String(), err)
	}
}

func TestDefaultsAreInfoAndText(t *testing.T) {
	var l Flags
	l.Register(pflag.NewFlagSet("test", pflag.ContinueOnError))
	var out bytes.Buffer
	logger, err := l.Logger(&out)
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("dropped")
	logger.Info("kept")
	if got := out.String(); !strings.Contains(got, "level=INFO msg=kept") || strings.Contains(got, "dropped") {
		t.Fatalf("text at info: %q", got)
	}
}

func TestBadValuesNameTheFlag(t *testing.T) {
	for _, c := range []struct {
		flags Flags
		want  string
	}{
		{Flags{Level: "loud", Format: "text"}, "--log-level"},
		{Flags{Level: "info", Format: "xml"}, "--log-format"},
	} {
		if _, err := c.flags.Logger(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %s", c.flags, err, c.want)
		}
	}
}
