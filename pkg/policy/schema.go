package policy

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// schemaType is the JSON type a schema node expects.
type schemaType uint8

const (
	typeObject schemaType = iota
	typeArray
	typeString
	typeInteger
	typeBoolean
	typeAny // any value: accepted without looking inside (only budget and depth are checked)
)

func (t schemaType) String() string {
	return [...]string{"object", "array", "string", "integer", "boolean", "any"}[t]
}

// schema is the part of an OpenAPI v3 schema that the KubeArmor CRDs use.
type schema struct {
	typ schemaType

	// typeObject
	props     map[string]*schema
	required  []string
	values    *schema      // additionalProperties: the object is a map whose values follow this schema
	rules     []objectRule // the CRD's x-kubernetes-validations, written in Go
	propNames []string     // sorted names of props, for messages

	// typeArray
	items    *schema
	maxItems int // 0: no bound

	// typeString
	enum      []string
	pattern   *regexp.Regexp
	hint      string // what the pattern means, in words
	maxLength int    // in characters; 0: no bound

	// typeInteger
	min, max *int64
	int32    bool // format: int32
}

// objectRule is a cross-field rule on an object: it returns a message when the object breaks it.
type objectRule struct {
	message string
	broken  func(obj *yaml.Node) bool // obj is the cleaned object: known, non-null fields only
}

// Bounds that keep hostile documents cheap. A real policy has a few hundred nodes and a depth of
// about eight.
const (
	maxDocumentNodes = 200_000 // nodes visited per document, counting each expansion of an alias
	maxDepth         = 64      // nesting of mappings and sequences
	maxIssues        = 100     // errors (and, separately, warnings) reported per document
)

// walker validates one document against a schema and builds a cleaned copy of it: known fields
// only, nulls pruned, the last of duplicate keys, aliases expanded, scalars in canonical form.
// The cleaned copy decodes into Policy without surprises.
type walker struct {
	strict     bool
	errors     []Issue
	warnings   []Issue
	suppressed int // errors not recorded past maxIssues
	budget     int
	exhausted  bool // the node budget or depth bound was hit; the walk has stopped
}

func (w *walker) errorf(path string, at *yaml.Node, format string, a ...any) {
	if len(w.errors) >= maxIssues {
		w.suppressed++
		return
	}
	w.errors = append(w.errors, newIssue(path, at, fmt.Sprintf(format, a...)))
}

func (w *walker) warnf(path string, at *yaml.Node, format string, a ...any) {
	if len(w.warnings) < maxIssues {
		w.warnings = append(w.warnings, newIssue(path, at, fmt.Sprintf(format, a...)))
	}
}

// strictf reports something that strict mode refuses and lenient mode only warns about.
func (w *walker) strictf(path string, at *yaml.Node, format string, a ...any) {
	if w.strict {
		w.errorf(path, at, format, a...)
	} else {
		w.warnf(path, at, format, a...)
	}
}

func newIssue(path string, at *yaml.Node, msg string) Issue {
	is := Issue{Path: path, Message: msg}
	if at != nil {
		is.Line, is.Column = at.Line, at.Column
	}
	return is
}

// visit follows an alias and charges the node budget. It returns nil once the budget is spent.
func (w *walker) visit(n *yaml.Node, path string, depth int) *yaml.Node {
	if w.exhausted {
		return nil
	}
	origin := n
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil
		}
		n = n.Alias
	}
	w.budget--
	if w.budget < 0 {
		w.exhausted = true
		w.errorf(path, origin, "document expands to more than %d nodes, counting every use of an alias; a policy has a few hundred, so this looks like an alias bomb or a runaway generator; refusing to go on", maxDocumentNodes)
		return nil
	}
	if depth > maxDepth {
		w.exhausted = true
		w.errorf(path, origin, "nested more than %d levels deep; refusing to go on", maxDepth)
		return nil
	}
	return n
}

// entry is one key of a mapping with the value that wins.
type entry struct {
	name       string
	key, value *yaml.Node
}

// entries lists the keys of a mapping in order, with the last of duplicate keys winning and
// merge keys (<<) applied without overriding explicit keys. Duplicate keys are reported.
func (w *walker) entries(m *yaml.Node, path string, depth int) []entry {
	out := make([]entry, 0, len(m.Content)/2)
	index := make(map[string]int, len(m.Content)/2)
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := w.visit(m.Content[i], path, depth+1)
		if k == nil {
			return out
		}
		v := m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.errorf(path, k, "a mapping key must be a string, not a %s", nodeKindName(k))
			continue
		}
		name := k.Value
		if first, dup := index[name]; dup {
			w.strictf(joinPath(path, name), k, "duplicate key %q (first set at line %d); the last one wins", name, out[first].key.Line)
			out[first].value = v
			out[first].key = k
			continue
		}
		index[name] = len(out)
		out = append(out, entry{name: name, key: k, value: v})
	}
	for _, src := range merges {
		for _, e := range w.mergeSources(src, path, depth) {
			if _, set := index[e.name]; !set {
				index[e.name] = len(out)
				out = append(out, e)
			}
		}
	}
	return out
}

// mergeSources expands the value of a merge key: a mapping or a sequence of mappings, the
// earlier ones winning.
func (w *walker) mergeSources(src *yaml.Node, path string, depth int) []entry {
	src = w.visit(src, path, depth+1)
	if src == nil {
		return nil
	}
	switch src.Kind {
	case yaml.MappingNode:
		return w.entries(src, path, depth+1)
	case yaml.SequenceNode:
		var out []entry
		seen := map[string]bool{}
		for _, item := range src.Content {
			item = w.visit(item, path, depth+1)
			if item == nil {
				return out
			}
			if item.Kind != yaml.MappingNode {
				w.errorf(path, item, "a merge key (<<) takes mappings, not a %s", nodeKindName(item))
				continue
			}
			for _, e := range w.entries(item, path, depth+1) {
				if !seen[e.name] {
					seen[e.name] = true
					out = append(out, e)
				}
			}
		}
		return out
	}
	w.errorf(path, src, "a merge key (<<) takes a mapping or a list of mappings, not a %s", nodeKindName(src))
	return nil
}

// isNull reports whether n (after aliases) is a null scalar: such fields count as absent,
// as the API server prunes them.
func isNull(n *yaml.Node) bool {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return false
	}
	s, err := resolveScalar(n)
	return err == nil && s.typ == scalarNull
}

// value validates n against s and returns its cleaned copy, or nil when n is invalid.
func (w *walker) value(n *yaml.Node, s *schema, path string, depth int) *yaml.Node {
	n = w.visit(n, path, depth)
	if n == nil {
		return nil
	}
	switch s.typ {
	case typeObject:
		return w.object(n, s, path, depth)
	case typeArray:
		return w.array(n, s, path, depth)
	case typeAny:
		w.skim(n, path, depth)
		return nil
	default:
		return w.scalarValue(n, s, path)
	}
}

func (w *walker) object(n *yaml.Node, s *schema, path string, depth int) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		w.errorf(path, n, "must be an object (a mapping), got %s", describeNode(n))
		return nil
	}
	clean := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	present := map[string]bool{}
	for _, e := range w.entries(n, path, depth) {
		fieldPath := joinPath(path, e.name)
		var fs *schema
		if s.values != nil {
			fs = s.values
		} else if fs = s.props[e.name]; fs == nil {
			w.strictf(fieldPath, e.key, "unknown field %q%s", e.name, unknownFieldHint(e.name, path, s))
			continue
		}
		if isNull(e.value) {
			continue
		}
		present[e.name] = true
		if v := w.value(e.value, fs, fieldPath, depth+1); v != nil {
			clean.Content = append(clean.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: e.name, Line: e.key.Line, Column: e.key.Column}, v)
		}
		if w.exhausted {
			return nil
		}
	}
	for _, r := range s.required {
		if !present[r] {
			w.errorf(joinPath(path, r), n, "required field %q is missing", r)
		}
	}
	for _, r := range s.rules {
		if r.broken(clean) {
			w.errorf(path, n, "%s", r.message)
		}
	}
	return clean
}

func (w *walker) array(n *yaml.Node, s *schema, path string, depth int) *yaml.Node {
	if n.Kind != yaml.SequenceNode {
		w.errorf(path, n, "must be a list, got %s", describeNode(n))
		return nil
	}
	if s.maxItems > 0 && len(n.Content) > s.maxItems {
		w.errorf(path, n, "has %d items; at most %d are allowed", len(n.Content), s.maxItems)
	}
	clean := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: n.Line, Column: n.Column}
	for i, item := range n.Content {
		if v := w.value(item, s.items, path+"["+strconv.Itoa(i)+"]", depth+1); v != nil {
			clean.Content = append(clean.Content, v)
		}
		if w.exhausted {
			return nil
		}
	}
	return clean
}

// skim walks a value the schema does not describe, charging the budget and checking duplicate keys.
func (w *walker) skim(n *yaml.Node, path string, depth int) {
	switch n.Kind {
	case yaml.MappingNode:
		for _, e := range w.entries(n, path, depth) {
			if v := w.visit(e.value, path, depth+1); v != nil {
				w.skim(v, joinPath(path, e.name), depth+1)
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if v := w.visit(item, path, depth+1); v != nil {
				w.skim(v, path+"["+strconv.Itoa(i)+"]", depth+1)
			}
		}
	}
}

func (w *walker) scalarValue(n *yaml.Node, s *schema, path string) *yaml.Node {
	if n.Kind != yaml.ScalarNode {
		w.errorf(path, n, "must be %s, got %s", article(s.typ), describeNode(n))
		return nil
	}
	sc, err := resolveScalar(n)
	if err != nil {
		w.errorf(path, n, "%v", err)
		return nil
	}
	out := &yaml.Node{Kind: yaml.ScalarNode, Line: n.Line, Column: n.Column}
	switch s.typ {
	case typeString:
		if sc.typ != scalarString {
			w.errorf(path, n, "must be a string, got %s%s", sc.describe(), quoteHint(sc))
			return nil
		}
		if !w.checkString(sc.s, s, path, n) {
			return nil
		}
		out.Tag, out.Value = "!!str", sc.s
	case typeBoolean:
		if sc.typ != scalarBool {
			w.errorf(path, n, "must be a boolean (true or false), got %s", sc.describe())
			return nil
		}
		out.Tag, out.Value = "!!bool", strconv.FormatBool(sc.b)
	case typeInteger:
		i, ok := sc.integer()
		if !ok {
			if sc.typ == scalarInt || sc.typ == scalarFloat {
				w.errorf(path, n, "must be a whole number within 64 bits, got %s", sc.describe())
			} else {
				w.errorf(path, n, "must be an integer, got %s", sc.describe())
			}
			return nil
		}
		if !w.checkInteger(i, s, path, n) {
			return nil
		}
		out.Tag, out.Value = "!!int", strconv.FormatInt(i, 10)
	}
	return out
}

func (w *walker) checkString(v string, s *schema, path string, at *yaml.Node) bool {
	ok := true
	if s.enum != nil && !contains(s.enum, v) {
		w.errorf(path, at, "must be one of %s; got %q%s", listOrSummary(s.enum), truncate(v, 60), enumHint(v, s.enum))
		ok = false
	}
	if s.maxLength > 0 && utf8.RuneCountInString(v) > s.maxLength {
		w.errorf(path, at, "is %d characters long; at most %d are allowed", utf8.RuneCountInString(v), s.maxLength)
		ok = false
	}
	if s.pattern != nil && !s.pattern.MatchString(v) {
		w.errorf(path, at, "%q is not %s (pattern %s)", truncate(v, 60), s.hint, s.pattern)
		ok = false
	}
	return ok
}

func (w *walker) checkInteger(v int64, s *schema, path string, at *yaml.Node) bool {
	switch {
	case s.int32 && (v < math.MinInt32 || v > math.MaxInt32):
		w.errorf(path, at, "%d does not fit in 32 bits", v)
	case s.min != nil && v < *s.min && s.max != nil:
		w.errorf(path, at, "must be between %d and %d, got %d", *s.min, *s.max, v)
	case s.max != nil && v > *s.max && s.min != nil:
		w.errorf(path, at, "must be between %d and %d, got %d", *s.min, *s.max, v)
	case s.min != nil && v < *s.min:
		w.errorf(path, at, "must be at least %d, got %d", *s.min, v)
	case s.max != nil && v > *s.max:
		w.errorf(path, at, "must be at most %d, got %d", *s.max, v)
	default:
		return true
	}
	return false
}

// joinPath appends a field to a path the way users write it: spec.file.matchPaths[0].path.
// Keys that are not plain names (label keys such as app.kubernetes.io/name) are bracketed.
func joinPath(path, field string) string {
	if !plainName(field) {
		field = "[" + strconv.Quote(field) + "]"
		return path + field
	}
	if path == "" {
		return field
	}
	return path + "." + field
}

func plainName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func nodeKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.DocumentNode:
		return "document"
	default:
		return "scalar"
	}
}

// describeNode names a value for "got ..." in messages.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	sc, err := resolveScalar(n)
	if err != nil {
		return fmt.Sprintf("%q", truncate(n.Value, 60))
	}
	return sc.describe()
}

func article(t schemaType) string {
	switch t {
	case typeInteger:
		return "an integer"
	case typeBoolean:
		return "a boolean (true or false)"
	default:
		return "a " + t.String()
	}
}

// quoteHint tells the user how to make a YAML 1.1 word or a number a string.
func quoteHint(sc scalar) string {
	if sc.typ == scalarNull {
		return ""
	}
	return fmt.Sprintf(" (quote it, \"%s\", to make it a string)", sc.s)
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// listOrSummary lists a short enum in full and summarises a long one (the 335 syscalls).
func listOrSummary(enum []string) string {
	if len(enum) <= 12 {
		return strings.Join(enum, ", ")
	}
	return fmt.Sprintf("the %d names the CRD lists (%s, %s, ..., %s)", len(enum), enum[0], enum[1], enum[len(enum)-1])
}

// enumHint suggests the value the user probably meant.
func enumHint(v string, enum []string) string {
	for _, e := range enum {
		if strings.EqualFold(e, v) {
			return fmt.Sprintf(" (did you mean %s?)", e)
		}
	}
	if m := closest(v, enum); m != "" {
		return fmt.Sprintf(" (did you mean %s?)", m)
	}
	return ""
}

// unknownFieldHint says what the user probably meant by an unknown field.
func unknownFieldHint(name, parent string, s *schema) string {
	if name == "selector" && s.props["nodeSelector"] != nil {
		return "; this kind selects nodes with nodeSelector"
	}
	if strings.HasSuffix(parent, "selector") || strings.HasSuffix(parent, "Selector") {
		if _, ok := s.props["matchLabels"]; ok && name != "matchLabels" {
			return fmt.Sprintf("; labels go under %s.matchLabels", parent)
		}
	}
	for _, p := range s.propNames {
		if strings.EqualFold(p, name) {
			return fmt.Sprintf("; did you mean %q?", p)
		}
	}
	if m := closest(name, s.propNames); m != "" {
		return fmt.Sprintf("; did you mean %q?", m)
	}
	if len(s.propNames) <= 12 {
		return "; expected one of " + strings.Join(s.propNames, ", ")
	}
	return ""
}

// closest returns the candidate within edit distance 2 of s, if exactly one is nearest.
func closest(s string, candidates []string) string {
	best, bestDist, tie := "", 3, false
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c), 3)
		switch {
		case d < bestDist:
			best, bestDist, tie = c, d, false
		case d == bestDist:
			tie = true
		}
	}
	if tie || best == "" {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, or limit when it is at least limit.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}

// sortIssues orders issues by position, keeping the walk's order for equal positions.
func sortIssues(issues []Issue) {
	sort.SliceStable(issues, func(i, j int) bool {
		if issues[i].Line != issues[j].Line {
			return issues[i].Line < issues[j].Line
		}
		return issues[i].Column < issues[j].Column
	})
}
