package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

// Bounds on node labels. A Kubernetes label key is at most 317 bytes (a 253-byte prefix, "/",
// a 63-byte name) and a value 63; the bounds here are looser, so that every real node fits,
// and tight enough that a mistaken file (a log, a binary) is refused rather than loaded.
const (
	maxNodeLabels         = 256
	maxNodeLabelKey       = 317
	maxNodeLabelValue     = 1024
	maxNodeLabelsFileSize = 256 << 10
)

// ParseNodeLabels reads KEY=VALUE pairs (from --node-label flags) into a map; a key given twice
// keeps its last value.
func ParseNodeLabels(pairs []string) (map[string]string, error) {
	labels := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("node label %q: want KEY=VALUE", p)
		}
		labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return labels, checkNodeLabels(labels)
}

// ReadNodeLabelsFile reads node labels from a file holding either a JSON object of strings
// ({"zone": "a"}) or KEY=VALUE lines, where blank lines and lines starting with # are skipped
// (the format of Kubernetes' downward API label files, whose values may be quoted).
func ReadNodeLabelsFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("node labels file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxNodeLabelsFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("node labels file %s: %w", path, err)
	}
	if len(data) > maxNodeLabelsFileSize {
		return nil, fmt.Errorf("node labels file %s is larger than %d bytes: is it the right file?", path, maxNodeLabelsFileSize)
	}
	labels, err := parseNodeLabelsFile(data)
	if err != nil {
		return nil, fmt.Errorf("node labels file %s: %w", path, err)
	}
	return labels, nil
}

func parseNodeLabelsFile(data []byte) (map[string]string, error) {
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("{")) {
		var labels map[string]string
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		if err := dec.Decode(&labels); err != nil {
			return nil, fmt.Errorf("want a JSON object of string values: %w", err)
		}
		if dec.More() {
			return nil, errors.New("text after the JSON object")
		}
		if labels == nil {
			labels = map[string]string{}
		}
		return labels, checkNodeLabels(labels)
	}
	labels := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want KEY=VALUE or a JSON object, got %q", i+1, truncate(line, 64))
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		labels[strings.TrimSpace(k)] = v
		if len(labels) > maxNodeLabels {
			break // checkNodeLabels says so
		}
	}
	return labels, checkNodeLabels(labels)
}

// checkNodeLabels refuses labels that no selector could mean: empty keys, keys with spaces or
// control characters, and more or longer labels than the bounds.
func checkNodeLabels(labels map[string]string) error {
	if len(labels) > maxNodeLabels {
		return fmt.Errorf("more than %d node labels", maxNodeLabels)
	}
	for k, v := range labels {
		switch {
		case k == "":
			return errors.New("node label with an empty key")
		case len(k) > maxNodeLabelKey:
			return fmt.Errorf("node label key %q is longer than %d bytes", truncate(k, 64), maxNodeLabelKey)
		case strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return fmt.Errorf("node label key %q holds a space or control character", truncate(k, 64))
		case len(v) > maxNodeLabelValue:
			return fmt.Errorf("node label %s: value longer than %d bytes", truncate(k, 64), maxNodeLabelValue)
		case strings.IndexFunc(v, unicode.IsControl) >= 0:
			return fmt.Errorf("node label %s: value holds a control character", truncate(k, 64))
		}
	}
	return nil
}
