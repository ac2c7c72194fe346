package policy

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// scalarType is the JSON type a YAML scalar becomes on its way to the API server.
type scalarType uint8

const (
	scalarNull scalarType = iota
	scalarBool
	scalarInt
	scalarFloat
	scalarString
)

func (t scalarType) String() string {
	switch t {
	case scalarNull:
		return "null"
	case scalarBool:
		return "boolean"
	case scalarInt:
		return "integer"
	case scalarFloat:
		return "number"
	default:
		return "string"
	}
}

// scalar is a resolved YAML scalar.
type scalar struct {
	typ scalarType
	b   bool
	i   int64
	u   uint64 // integers above math.MaxInt64, with isUint set
	f   float64
	s   string // the text, for strings and for messages

	isUint bool
}

// yaml11Words are the plain words that YAML 1.1 resolves to booleans and nulls.
// kubectl and the API server read YAML with a YAML 1.1 resolver (sigs.k8s.io/yaml), so
// `ownerOnly: yes` is a boolean there and `tags: [on]` is not a list of strings. We resolve
// plain scalars the same way, rather than with yaml.v3's YAML 1.2 rules, so that our verdicts
// agree with the cluster's.
var yaml11Words = map[string]scalar{}

func init() {
	for _, w := range []string{"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"} {
		yaml11Words[w] = scalar{typ: scalarBool, b: true, s: w}
	}
	for _, w := range []string{"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"} {
		yaml11Words[w] = scalar{typ: scalarBool, b: false, s: w}
	}
	for _, w := range []string{"", "~", "null", "Null", "NULL"} {
		yaml11Words[w] = scalar{typ: scalarNull, s: w}
	}
	for _, w := range []string{".nan", ".NaN", ".NAN"} {
		yaml11Words[w] = scalar{typ: scalarFloat, f: math.NaN(), s: w}
	}
	for _, w := range []string{".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"} {
		yaml11Words[w] = scalar{typ: scalarFloat, f: math.Inf(1), s: w}
	}
	for _, w := range []string{"-.inf", "-.Inf", "-.INF"} {
		yaml11Words[w] = scalar{typ: scalarFloat, f: math.Inf(-1), s: w}
	}
}

var yaml11Float = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

// resolvePlain resolves an untagged plain scalar with YAML 1.1 rules.
// Timestamps stay strings, as they do when the API server's YAML reader decodes into JSON.
func resolvePlain(text string) scalar {
	if s, ok := yaml11Words[text]; ok {
		return s
	}
	c := text[0] // text is not empty: "" is in yaml11Words
	switch {
	case c == '.':
		if f, err := strconv.ParseFloat(text, 64); err == nil {
			return scalar{typ: scalarFloat, f: f, s: text}
		}
	case c == '+' || c == '-' || (c >= '0' && c <= '9'):
		return resolveNumber(text)
	}
	return scalar{typ: scalarString, s: text}
}

func resolveNumber(text string) scalar {
	plain := strings.ReplaceAll(text, "_", "")
	if i, err := strconv.ParseInt(plain, 0, 64); err == nil {
		return scalar{typ: scalarInt, i: i, s: text}
	}
	if u, err := strconv.ParseUint(plain, 0, 64); err == nil {
		return scalar{typ: scalarInt, u: u, isUint: true, s: text}
	}
	if yaml11Float.MatchString(plain) {
		if f, err := strconv.ParseFloat(plain, 64); err == nil {
			return scalar{typ: scalarFloat, f: f, s: text}
		}
	}
	return scalar{typ: scalarString, s: text}
}

// resolveScalar gives the JSON type of a scalar node: quoted and block scalars are strings,
// explicit standard tags are honoured, custom tags leave the text a string, and plain
// scalars follow YAML 1.1. The error is for an explicit tag the text does not fit (`!!int abc`).
func resolveScalar(n *yaml.Node) (scalar, error) {
	if n.Style&yaml.TaggedStyle == 0 {
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			return scalar{typ: scalarString, s: n.Value}, nil
		}
		return resolvePlain(n.Value), nil
	}
	var want scalarType
	switch n.Tag {
	case "!!null":
		want = scalarNull
	case "!!bool":
		want = scalarBool
	case "!!int":
		want = scalarInt
	case "!!float":
		want = scalarFloat
	default: // !!str, !!binary, !!timestamp and custom tags
		return scalar{typ: scalarString, s: n.Value}, nil
	}
	var got scalar
	if n.Value == "" && want != scalarNull {
		got = scalar{typ: scalarString}
	} else {
		got = resolvePlain(n.Value)
	}
	if got.typ == scalarInt && want == scalarFloat {
		got.typ, got.f = scalarFloat, got.float()
	}
	if got.typ != want {
		return scalar{}, fmt.Errorf("cannot read %q as %s", n.Value, n.Tag)
	}
	return got, nil
}

func (s scalar) float() float64 {
	switch {
	case s.typ == scalarFloat:
		return s.f
	case s.isUint:
		return float64(s.u)
	default:
		return float64(s.i)
	}
}

// integer returns the scalar as an int64 when JSON would carry it as a whole number
// (5 and 5.0 alike, since YAML→JSON turns 5.0 into 5).
func (s scalar) integer() (int64, bool) {
	switch s.typ {
	case scalarInt:
		if s.isUint {
			return 0, false
		}
		return s.i, true
	case scalarFloat:
		if s.f == math.Trunc(s.f) && s.f >= math.MinInt64 && s.f < math.MaxInt64 {
			return int64(s.f), true
		}
	}
	return 0, false
}

// describe names the scalar for error messages: `string "high"`, `integer 11`.
func (s scalar) describe() string {
	if s.typ == scalarString {
		return fmt.Sprintf("string %q", truncate(s.s, 60))
	}
	if s.typ == scalarNull {
		return "null"
	}
	return fmt.Sprintf("%s %s", s.typ, truncate(s.s, 60))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
