package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultMaxFileSize bounds the size of one policy file unless Options.MaxFileSize says otherwise.
const DefaultMaxFileSize int64 = 4 << 20

// Options control parsing and validation.
type Options struct {
	Lenient     bool  // unknown fields and duplicate keys become warnings; last duplicate wins
	IgnoreOther bool  // documents that are not KubeArmor policies are skipped silently
	MaxFileSize int64 // 0 means DefaultMaxFileSize (4 MiB)
}

func (o Options) maxFileSize() int64 {
	if o.MaxFileSize > 0 {
		return o.MaxFileSize
	}
	return DefaultMaxFileSize
}

// Issue is one error or warning about a document. Line and Column are 1-based; 0 when the issue
// is about the file as a whole. Path is the field path, such as spec.file.matchPaths[0].path.
type Issue struct {
	Path    string `json:"path"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

// String formats the issue as "line:col path: message" (or "line path: message" when the column is unknown).
func (i Issue) String() string {
	var b strings.Builder
	switch {
	case i.Line > 0 && i.Column > 0:
		fmt.Fprintf(&b, "%d:%d ", i.Line, i.Column)
	case i.Line > 0:
		fmt.Fprintf(&b, "%d ", i.Line)
	}
	if i.Path != "" {
		b.WriteString(i.Path)
		b.WriteString(": ")
	}
	b.WriteString(i.Message)
	return b.String()
}

// Document is one YAML document of a policy file and what validation found in it.
type Document struct {
	File  string // the file's name as given (or as found under a directory)
	Index int    // index of the document in its file, from 0, counting empty documents too

	APIVersion, Kind, Name, Namespace string

	// Policy is the typed policy, nil when the document could not be decoded. It is filled even
	// for an invalid document, from the parts that were valid: check Valid before acting on it.
	Policy *Policy

	Errors   []Issue
	Warnings []Issue

	// Line and Column locate the document's first node, for messages about the whole document.
	Line, Column int
}

// Valid reports whether the document has no errors.
func (d *Document) Valid() bool { return len(d.Errors) == 0 }

// ParseBytes parses and validates every document in data, which came from file. It never panics:
// problems with the file as a whole (too big, broken YAML) become a Document with Errors.
func ParseBytes(file string, data []byte, opts Options) (docs []Document) {
	defer func() {
		if r := recover(); r != nil {
			docs = append(docs, Document{File: file, Index: len(docs), Errors: []Issue{{
				Message: fmt.Sprintf("internal error while reading this file (%v); please report it with the file attached", r),
			}}})
		}
	}()
	if limit := opts.maxFileSize(); int64(len(data)) > limit {
		return []Document{fileTooBig(file, int64(len(data)), limit)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for index := 0; ; index++ {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			return append(docs, syntaxError(file, index, err))
		}
		if doc, ok := parseDocument(file, index, &root, opts); ok {
			docs = append(docs, doc)
		}
	}
}

// fileTooBig reports a file over the size limit; size is -1 when only "more than limit" is known.
func fileTooBig(file string, size, limit int64) Document {
	what := "more than"
	if size >= 0 {
		what = fmt.Sprintf("%d bytes, more than", size)
	}
	return Document{File: file, Errors: []Issue{{
		Message: fmt.Sprintf("file is %s the limit of %d bytes; a policy file is normally a few KiB (raise the limit only for a file you trust)", what, limit),
	}}}
}

var yamlErrorLine = regexp.MustCompile(`^yaml: line (\d+): `)

func syntaxError(file string, index int, err error) Document {
	msg := err.Error()
	is := Issue{Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
	if m := yamlErrorLine.FindStringSubmatch(msg); m != nil {
		is.Line, _ = strconv.Atoi(m[1])
		is.Message = "invalid YAML: " + msg[len(m[0]):]
	}
	return Document{File: file, Index: index, Errors: []Issue{is}, Line: is.Line}
}

// parseDocument validates one document. ok is false when the document is to be skipped: empty,
// or not a KubeArmor policy while opts.IgnoreOther is set.
func parseDocument(file string, index int, root *yaml.Node, opts Options) (Document, bool) {
	doc := Document{File: file, Index: index}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return doc, false
	}
	top := root.Content[0]
	for top.Kind == yaml.AliasNode && top.Alias != nil {
		top = top.Alias
	}
	doc.Line, doc.Column = top.Line, top.Column
	if top.Kind == yaml.ScalarNode && isNull(top) {
		return doc, false // a document of comments only, or an explicit null
	}
	if top.Kind != yaml.MappingNode {
		if opts.IgnoreOther {
			return doc, false
		}
		doc.Errors = append(doc.Errors, newIssue("", top, fmt.Sprintf("not a KubeArmor policy: the document is a %s, not a mapping with apiVersion %s and kind %s", nodeKindName(top), APIVersion, strings.Join(Kinds, ", "))))
		return doc, true
	}
	identify(&doc, top)
	s, isPolicy := kindSchemas[doc.Kind]
	if !isPolicy || doc.APIVersion != APIVersion {
		ours := isPolicy || strings.HasPrefix(doc.APIVersion, apiGroup+"/")
		if !ours && opts.IgnoreOther {
			return doc, false
		}
		doc.Errors = append(doc.Errors, notAPolicy(&doc, top, isPolicy, ours))
		return doc, true
	}

	w := &walker{strict: !opts.Lenient, budget: maxDocumentNodes}
	clean := w.value(top, s, "", 0)
	doc.Errors, doc.Warnings = w.errors, w.warnings
	if clean != nil && !w.exhausted {
		var p Policy
		if err := clean.Decode(&p); err != nil {
			doc.Errors = append(doc.Errors, newIssue("", top, fmt.Sprintf("internal error: the validated document does not decode (%v); please report it", err)))
		} else {
			doc.Policy = &p
		}
	}
	doc.Warnings = append(doc.Warnings, advice(&doc, top)...)
	sortIssues(doc.Errors)
	sortIssues(doc.Warnings)
	if w.suppressed > 0 {
		doc.Errors = append(doc.Errors, Issue{Message: fmt.Sprintf("%d more errors not shown", w.suppressed)})
	}
	return doc, true
}

const apiGroup = "security.kubearmor.com"

// identify reads apiVersion, kind, metadata.name and metadata.namespace, whatever their validity,
// so that every document can be named in reports.
func identify(doc *Document, top *yaml.Node) {
	scalarText := func(n *yaml.Node) string {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if n.Kind == yaml.ScalarNode && !isNull(n) {
			return n.Value
		}
		return ""
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		v := top.Content[i+1]
		switch top.Content[i].Value {
		case "apiVersion":
			doc.APIVersion = scalarText(v)
		case "kind":
			doc.Kind = scalarText(v)
		case "metadata":
			for v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			if v.Kind != yaml.MappingNode {
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				switch v.Content[j].Value {
				case "name":
					doc.Name = scalarText(v.Content[j+1])
				case "namespace":
					doc.Namespace = scalarText(v.Content[j+1])
				}
			}
		}
	}
}

// notAPolicy explains why a mapping is not a KubeArmor policy we can validate.
func notAPolicy(doc *Document, top *yaml.Node, knownKind, ours bool) Issue {
	switch {
	case knownKind && doc.APIVersion == "":
		return newIssue("apiVersion", top, fmt.Sprintf("required field \"apiVersion\" is missing; a %s has apiVersion %s", doc.Kind, APIVersion))
	case knownKind:
		return newIssue("apiVersion", top, fmt.Sprintf("a %s has apiVersion %s, not %q", doc.Kind, APIVersion, doc.APIVersion))
	case ours && doc.Kind == "":
		return newIssue("kind", top, fmt.Sprintf("required field \"kind\" is missing; expected one of %s", strings.Join(Kinds, ", ")))
	case ours:
		return newIssue("kind", top, fmt.Sprintf("unknown kind %q%s; expected one of %s", doc.Kind, enumHint(doc.Kind, Kinds), strings.Join(Kinds, ", ")))
	}
	what := "apiVersion " + strconv.Quote(doc.APIVersion) + ", kind " + strconv.Quote(doc.Kind)
	return newIssue("", top, fmt.Sprintf("not a KubeArmor policy (%s); expected apiVersion %s and kind %s (skip such documents with --ignore-other)", what, APIVersion, strings.Join(Kinds, ", ")))
}

// dnsSubdomain is what Kubernetes requires of object names.
var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// advice returns warnings about things the CRD schema lets through but the API server or
// KubeArmor will not like. They never make a document invalid.
func advice(doc *Document, top *yaml.Node) []Issue {
	var out []Issue
	p := doc.Policy
	if p == nil {
		return nil
	}
	switch {
	case doc.Name == "" && p.Metadata.GenerateName == "":
		out = append(out, newIssue("metadata.name", top, "no name: the API server will refuse a policy without metadata.name"))
	case p.Metadata.Name != "" && (len(p.Metadata.Name) > 253 || !dnsSubdomain.MatchString(p.Metadata.Name)):
		out = append(out, newIssue("metadata.name", top, fmt.Sprintf("%q is not a valid Kubernetes name (lower-case letters, digits, '-' and '.', at most 253 characters)", truncate(p.Metadata.Name, 60))))
	}
	if p.Metadata.Namespace != "" && !Namespaced(doc.Kind) {
		out = append(out, newIssue("metadata.namespace", top, fmt.Sprintf("a %s is cluster-scoped: the namespace %q is ignored", doc.Kind, p.Metadata.Namespace)))
	}
	return out
}

// FirstError returns nil when every document is valid, and otherwise an error that lists the
// invalid documents and their errors, one per line: "file:doc line:col path: message".
func FirstError(docs []Document) error {
	var b strings.Builder
	invalid := 0
	for i := range docs {
		d := &docs[i]
		if d.Valid() {
			continue
		}
		invalid++
		for _, is := range d.Errors {
			fmt.Fprintf(&b, "\n  %s:%d %s", d.File, d.Index, is)
		}
	}
	if invalid == 0 {
		return nil
	}
	noun := "documents are"
	if invalid == 1 {
		noun = "document is"
	}
	return fmt.Errorf("%d policy %s invalid:%s", invalid, noun, b.String())
}
