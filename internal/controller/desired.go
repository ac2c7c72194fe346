package controller

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/karmor/karmor/internal/policysource"
)

// desired is one object the artifact asks for, as it will be applied.
type desired struct {
	ref  PolicyRef
	kind kindInfo
	obj  *unstructured.Unstructured
	hash string
}

// serverManaged are metadata fields the API server owns or that name another cluster's
// objects: a document exported with `kubectl get -o yaml` carries them, and applying them would
// fail or mean something else here.
var serverManaged = []string{"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
	"deletionGracePeriodSeconds", "managedFields", "selfLink", "ownerReferences", "finalizers", "generateName"}

// maxNodes bounds the YAML nodes one document may expand to (aliases included) when it is turned
// into JSON; the strict parser already bounded it, this keeps the conversion safe on its own.
const maxNodes = 1 << 20

// desiredObjects turns content into the objects to apply: each document as the artifact holds
// it (not through pkg/policy's typed model, which may drop fields), with our labels and
// annotations, the namespace the rules give, and server-managed metadata removed. Two documents
// naming the same object make the whole set invalid: which one wins would be arbitrary.
func desiredObjects(content *policysource.Content, src *source) ([]desired, error) {
	parsed := map[string][]*yaml.Node{}
	var out []desired
	seen := map[PolicyRef]string{}
	for _, doc := range content.Documents {
		name := strings.TrimPrefix(doc.File, content.Location+"/")
		nodes, ok := parsed[name]
		if !ok {
			data, found := content.Files[name]
			if !found {
				return nil, fmt.Errorf("internal error: no file %q for document %d of %s", name, doc.Index, doc.File)
			}
			var err error
			if nodes, err = splitYAML(data); err != nil {
				return nil, fmt.Errorf("%s: %w", doc.File, err)
			}
			parsed[name] = nodes
		}
		if doc.Index >= len(nodes) {
			return nil, fmt.Errorf("internal error: %s has no document %d", doc.File, doc.Index)
		}
		budget := maxNodes
		v, err := toJSONValue(nodes[doc.Index], &budget, 0)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", doc.File, doc.Index, err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s document %d is not a mapping", doc.File, doc.Index)
		}
		d, err := newDesired(m, src, content.Location)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", doc.File, doc.Index, err)
		}
		if first, dup := seen[d.ref]; dup {
			return nil, fmt.Errorf("%s is defined twice, in %s and in %s document %d: rename one", d.ref, first, doc.File, doc.Index)
		}
		seen[d.ref] = fmt.Sprintf("%s document %d", doc.File, doc.Index)
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ref.String() < out[j].ref.String() })
	return out, nil
}

func newDesired(m map[string]any, src *source, location string) (desired, error) {
	kind, _ := m["kind"].(string)
	info, ok := kindByName(kind)
	if !ok {
		return desired{}, fmt.Errorf("kind %q is not a KubeArmor policy kind", kind)
	}
	meta, _ := m["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	for _, f := range serverManaged {
		delete(meta, f)
	}
	delete(m, "status")
	name, _ := meta["name"].(string)
	if name == "" {
		return desired{}, errors.New("metadata.name is empty")
	}
	if info.Namespaced {
		ns := src.spec.TargetNamespace
		if ns == "" {
			ns, _ = meta["namespace"].(string)
		}
		if ns == "" {
			ns = src.obj.GetNamespace()
		}
		meta["namespace"] = ns
	} else {
		delete(meta, "namespace")
	}
	labels := stringMap(meta["labels"])
	labels[LabelManagedBy] = ManagedByValue
	labels[LabelSourceNamespace] = src.obj.GetNamespace()
	labels[LabelSourceName] = src.obj.GetName()
	meta["labels"] = labels
	annotations := stringMap(meta["annotations"])
	delete(annotations, AnnotationAppliedFrom)
	delete(annotations, AnnotationContentHash)
	annotations[AnnotationSource] = src.key()
	meta["annotations"] = annotations
	m["metadata"] = meta

	// The hash covers everything but the two annotations that depend on it or on the
	// artifact's digest: an object whose content did not change is not rewritten when the
	// digest moves.
	canonical, err := json.Marshal(m)
	if err != nil {
		return desired{}, fmt.Errorf("cannot encode as JSON: %w", err)
	}
	sum := sha256.Sum256(canonical)
	hash := "sha256:" + hex.EncodeToString(sum[:])
	annotations[AnnotationContentHash] = hash
	annotations[AnnotationAppliedFrom] = location
	ns, _ := meta["namespace"].(string)
	return desired{
		ref:  PolicyRef{Kind: info.Kind, Namespace: ns, Name: name},
		kind: info,
		obj:  &unstructured.Unstructured{Object: m},
		hash: hash,
	}, nil
}

// stringMap copies a labels or annotations map; values that are not strings cannot come from
// a valid policy and are dropped.
func stringMap(v any) map[string]any {
	out := map[string]any{}
	if m, ok := v.(map[string]any); ok {
		for k, v := range m {
			if s, ok := v.(string); ok {
				out[k] = s
			}
		}
	}
	return out
}

// splitYAML decodes every document of a file, counting empty ones, as pkg/policy numbers them.
func splitYAML(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var nodes []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return nodes, nil
		}
		if err != nil {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		nodes = append(nodes, &n)
	}
}

// toJSONValue converts a YAML node to the JSON value it means, with YAML 1.2 core types (the
// strict parser accepted nothing else where it matters). Scalars of other tags (timestamps,
// binary) stay the text they were written as.
func toJSONValue(n *yaml.Node, budget *int, depth int) (any, error) {
	*budget--
	if *budget < 0 || depth > 256 {
		return nil, errors.New("document is too large or too deeply nested")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return toJSONValue(n.Content[0], budget, depth+1)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, errors.New("dangling alias")
		}
		return toJSONValue(n.Alias, budget, depth+1)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			for k.Kind == yaml.AliasNode && k.Alias != nil {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a mapping key must be a scalar", k.Line)
			}
			if k.Tag == "!!merge" {
				return nil, fmt.Errorf("line %d: merge keys (<<) are not supported", k.Line)
			}
			v, err := toJSONValue(n.Content[i+1], budget, depth+1)
			if err != nil {
				return nil, err
			}
			m[k.Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := toJSONValue(c, budget, depth+1)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	case yaml.ScalarNode:
		return scalarValue(n)
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
}

func scalarValue(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return i, nil
	case "!!float":
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("line %d: %q is not a number JSON can hold", n.Line, n.Value)
		}
		return f, nil
	}
	return n.Value, nil
}
