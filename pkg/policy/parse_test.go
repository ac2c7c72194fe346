package policy_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/karmor/karmor/pkg/policy"
)

func parseOne(t *testing.T, src string, opts policy.Options) policy.Document {
	t.Helper()
	docs := policy.ParseBytes("t.yaml", []byte(src), opts)
	if len(docs) != 1 {
		t.Fatalf("%d documents, want 1: %+v", len(docs), docs)
	}
	return docs[0]
}

func hasIssue(issues []policy.Issue, path, message string) bool {
	for _, is := range issues {
		if is.Path == path && strings.Contains(is.Message, message) {
			return true
		}
	}
	return false
}

// TestTypedModel checks that a valid document decodes into the typed model that policy matching uses.
func TestTypedModel(t *testing.T) {
	docs, err := policy.ParseFiles([]string{policiesDir(t, "valid/ksp-web.yaml")}, policy.Options{})
	if err != nil || len(docs) != 1 || !docs[0].Valid() {
		t.Fatalf("ParseFiles: %v %+v", err, docs)
	}
	d := docs[0]
	if d.APIVersion != policy.APIVersion || d.Kind != policy.KindPolicy || d.Name != "ksp-web-hardening" || d.Namespace != "shop" {
		t.Errorf("identity: %q %q %q %q", d.APIVersion, d.Kind, d.Name, d.Namespace)
	}
	p := d.Policy
	if p.Metadata.Name != "ksp-web-hardening" || p.Metadata.Namespace != "shop" || p.Metadata.Labels["team"] != "platform" || p.Metadata.Annotations["karmor.io/owner"] != "platform@example.com" {
		t.Errorf("metadata: %+v", p.Metadata)
	}
	s := p.Spec
	if !reflect.DeepEqual(s.Selector.MatchLabels, map[string]string{"app": "web", "tier": "1"}) {
		t.Errorf("matchLabels: %v", s.Selector.MatchLabels)
	}
	wantExpr := []policy.MatchExpression{{Key: "label", Operator: "In", Values: []string{"env=prod", "env=staging"}}}
	if !reflect.DeepEqual(s.Selector.MatchExpressions, wantExpr) {
		t.Errorf("matchExpressions: %+v", s.Selector.MatchExpressions)
	}
	if s.Severity != 7 || s.Action != policy.ActionBlock || s.Message != "web container hardening" || !reflect.DeepEqual(s.Tags, []string{"MITRE", "T1059"}) {
		t.Errorf("policy meta: %+v", s.RuleMeta)
	}
	pr := s.Process
	if pr.Severity != 5 || len(pr.MatchPaths) != 2 || pr.MatchPaths[0].Path != "/usr/bin/curl" || pr.MatchPaths[0].FromSource[0].Path != "/bin/bash" {
		t.Errorf("process: %+v", pr)
	}
	if pr.MatchPaths[1].ExecName != "wget" || !pr.MatchPaths[1].OwnerOnly || !reflect.DeepEqual(pr.MatchPaths[1].AllowedArgs, []string{"-q", "--spider"}) {
		t.Errorf("process execname rule: %+v", pr.MatchPaths[1])
	}
	if pr.MatchDirectories[0].Dir != "/tmp/" || !pr.MatchDirectories[0].Recursive || pr.MatchDirectories[0].Action != policy.ActionAudit || pr.MatchPatterns[0].Pattern != "/**/nc" {
		t.Errorf("process dirs/patterns: %+v %+v", pr.MatchDirectories, pr.MatchPatterns)
	}
	f := s.File
	if f.Action != policy.ActionAllow || !f.MatchPaths[0].ReadOnly || f.MatchPaths[0].Severity != 9 || f.MatchPaths[0].Message != "shadow file touched" || f.MatchPaths[0].Tags[0] != "credentials" {
		t.Errorf("file paths: %+v", f)
	}
	if md := f.MatchDirectories[0]; md.Dir != "/etc/nginx/" || !md.Recursive || !md.ReadOnly || md.FromSource[0].Path != "/usr/sbin/nginx" {
		t.Errorf("file dirs (recursive: yes must be true): %+v", md)
	}
	if mp := f.MatchPatterns[0]; mp.Pattern != "/var/log/*.log" || !mp.ReadOnly || mp.OwnerOnly {
		t.Errorf("file patterns: %+v", mp)
	}
	n := s.Network
	if len(n.MatchProtocols) != 2 || n.MatchProtocols[1].Protocol != "ICMP" || n.MatchProtocols[1].FromSource[0].Path != "/bin/ping" || n.MatchDNSQueries[0].Domain != "evil.example.com" || n.MatchDNSQueries[0].Action != policy.ActionBlock {
		t.Errorf("network: %+v", n)
	}
	if c := s.Capabilities.MatchCapabilities; len(c) != 2 || c[0].Capability != "net_raw" || c[1].Action != policy.ActionAudit {
		t.Errorf("capabilities: %+v", c)
	}
	sc := s.Syscalls
	if !reflect.DeepEqual(sc.MatchSyscalls[0].Syscalls, []string{"unlink", "unlinkat"}) || sc.MatchSyscalls[0].FromSource[0].Dir != "/usr/bin/" || !sc.MatchSyscalls[0].FromSource[0].Recursive {
		t.Errorf("syscalls: %+v", sc.MatchSyscalls)
	}
	if sc.MatchPaths[0].Path != "/etc/" || !sc.MatchPaths[0].Recursive || sc.MatchPaths[0].Syscalls[0] != "openat" {
		t.Errorf("syscall paths: %+v", sc.MatchPaths)
	}
	if len(s.Presets) != 1 || s.Presets[0].Name != "filelessExec" || s.Presets[0].Action != policy.ActionAudit {
		t.Errorf("presets: %+v", s.Presets)
	}
}

func TestTypedModelOtherKinds(t *testing.T) {
	docs, err := policy.ParseFiles([]string{policiesDir(t, "valid")}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*policy.Policy{}
	for _, d := range docs {
		byName[d.Name] = d.Policy
	}
	h := byName["hsp-node-hardening"]
	if h == nil || h.Spec.NodeSelector.MatchLabels["kubernetes.io/hostname"] != "worker-1" || h.Spec.Selector != nil {
		t.Fatalf("host policy: %+v", h)
	}
	dev := h.Spec.Device.MatchDevice[0]
	if dev.Class != "USB" || *dev.Level != 1 || *dev.SubClass != 8 || *dev.Protocol != 80 || h.Spec.Device.Action != policy.ActionBlock {
		t.Errorf("device: %+v", dev)
	}
	c := byName["csp-no-shells"]
	if c == nil || c.Spec.Selector.MatchExpressions[0].Key != "namespace" || c.Spec.Selector.MatchExpressions[0].Operator != "NotIn" || c.Spec.Selector.MatchExpressions[0].Values[0] != "kube-system" {
		t.Fatalf("cluster policy: %+v", c)
	}
	n := byName["knp-node-ssh"]
	if n == nil || n.Spec.Level != "Policy" || n.Spec.Ingress[0].From[0].IPBlock.CIDR != "10.0.0.0/8" || n.Spec.Ingress[0].Ports[1].EndPort != 8080 || n.Spec.Ingress[0].Ports[0].Protocol != "TCP" || n.Spec.Ingress[0].Severity != 3 {
		t.Fatalf("network policy: %+v", n)
	}
	q := byName["knp-quota"]
	if q == nil || q.Spec.Egress[0].Limit != "10MB" || q.Spec.Egress[0].Duration != "1m" {
		t.Fatalf("quota policy: %+v", q)
	}
	a := byName["ksp-anchors"]
	if a == nil || len(a.Spec.Process.MatchPaths) != 2 || a.Spec.Process.MatchPaths[1].Path != "/usr/bin/apt-get" || a.Spec.Process.MatchPaths[1].Severity != 4 || !reflect.DeepEqual(a.Spec.Process.Tags, []string{"pci", "audit"}) {
		t.Fatalf("anchors and merge keys: %+v", a)
	}
	nl := byName["ksp-nulls"]
	if nl == nil || nl.Spec.Severity != 0 || nl.Spec.Message != "" || nl.Spec.File.MatchPaths[0].Tags != nil {
		t.Fatalf("nulls: %+v", nl)
	}
}

// TestLenient: unknown fields and duplicate keys become warnings, the last duplicate wins, and
// everything else stays an error.
func TestLenient(t *testing.T) {
	src, err := os.ReadFile(policiesDir(t, "invalid/ksp-duplicates.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	strict := parseOne(t, string(src), policy.Options{})
	if strict.Valid() || len(strict.Errors) != 2 {
		t.Fatalf("strict: want 2 duplicate-key errors, got %v", strict.Errors)
	}
	d := parseOne(t, string(src), policy.Options{Lenient: true})
	if !d.Valid() || len(d.Warnings) != 2 || !hasIssue(d.Warnings, "spec.action", "duplicate key") {
		t.Fatalf("lenient: errors %v warnings %v", d.Errors, d.Warnings)
	}
	if d.Policy.Spec.Action != policy.ActionBlock || !d.Policy.Spec.File.MatchPaths[0].ReadOnly {
		t.Errorf("the last duplicate must win: action %q readOnly %v", d.Policy.Spec.Action, d.Policy.Spec.File.MatchPaths[0].ReadOnly)
	}

	typos := parseOne(t, doc(ksp, "selector: {app: x}\nfile: {matchDirectories: [{dir: /a/, recurive: true}]}\naction: block"), policy.Options{Lenient: true})
	if len(typos.Warnings) != 2 || !hasIssue(typos.Warnings, "spec.selector.app", "unknown field") || !hasIssue(typos.Warnings, "spec.file.matchDirectories[0].recurive", "unknown field") {
		t.Errorf("lenient warnings: %v", typos.Warnings)
	}
	if len(typos.Errors) != 1 || !hasIssue(typos.Errors, "spec.action", "must be one of") {
		t.Errorf("lenient must still refuse bad values: %v", typos.Errors)
	}
	if typos.Policy == nil || typos.Policy.Spec.File.MatchDirectories[0].Recursive {
		t.Errorf("an unknown field must not reach the typed policy: %+v", typos.Policy)
	}
}

func TestDocuments(t *testing.T) {
	policyDoc := doc(ksp, sel+"action: Block")
	other := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
	src := "# leading comment\n---\n" + policyDoc + "---\n# nothing\n---\n" + other + "---\n" + strings.Replace(policyDoc, "name: t", "name: u", 1) + "...\n"

	docs := policy.ParseBytes("multi.yaml", []byte(src), policy.Options{})
	var got []string
	for _, d := range docs {
		got = append(got, d.Kind+"/"+d.Name)
		if d.File != "multi.yaml" {
			t.Errorf("File = %q", d.File)
		}
	}
	if !reflect.DeepEqual(got, []string{"KubeArmorPolicy/t", "ConfigMap/c", "KubeArmorPolicy/u"}) || docs[0].Index != 0 || docs[1].Index != 2 || docs[2].Index != 3 {
		t.Fatalf("documents %v, indexes %d %d %d; want the empty document skipped but counted", got, docs[0].Index, docs[1].Index, docs[2].Index)
	}
	if docs[1].Valid() || !strings.Contains(docs[1].Errors[0].Message, "not a KubeArmor policy") || docs[1].Errors[0].Line != 14 {
		t.Errorf("ConfigMap: %v", docs[1].Errors)
	}

	docs = policy.ParseBytes("multi.yaml", []byte(src), policy.Options{IgnoreOther: true})
	if len(docs) != 2 || docs[0].Name != "t" || docs[1].Name != "u" || docs[1].Index != 3 {
		t.Fatalf("IgnoreOther: %+v", docs)
	}

	// A document that means to be a policy is checked even with IgnoreOther.
	for _, src := range []string{
		"apiVersion: security.kubearmor.com/v2\nkind: KubeArmorPolicy\n",
		"kind: KubeArmorHostPolicy\nspec: {}\n",
		"apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicies\n",
		"apiVersion: security.kubearmor.com/v1\n",
	} {
		d := parseOne(t, src, policy.Options{IgnoreOther: true})
		if d.Valid() {
			t.Errorf("%q: accepted", src)
		}
	}
	for _, src := range []string{"", "# only a comment\n", "---\n", "~\n", "---\n...\n---\n"} {
		if docs := policy.ParseBytes("e.yaml", []byte(src), policy.Options{}); len(docs) != 0 {
			t.Errorf("%q: %d documents, want none", src, len(docs))
		}
	}
	for _, src := range []string{"just text\n", "[1, 2]\n", "42\n"} {
		if d := parseOne(t, src, policy.Options{}); d.Valid() || !strings.Contains(d.Errors[0].Message, "not a KubeArmor policy") {
			t.Errorf("%q: %v", src, d.Errors)
		}
		if docs := policy.ParseBytes("x.yaml", []byte(src), policy.Options{IgnoreOther: true}); len(docs) != 0 {
			t.Errorf("%q with IgnoreOther: %+v", src, docs)
		}
	}
}

func TestCRLFAndBOM(t *testing.T) {
	src := "\ufeff" + strings.ReplaceAll(doc(ksp, sel+"file: {matchPaths: [{path: /etc/passwd}]}\naction: Block"), "\n", "\r\n")
	d := parseOne(t, src, policy.Options{})
	if !d.Valid() || d.Policy.Spec.File.MatchPaths[0].Path != "/etc/passwd" {
		t.Fatalf("CRLF with BOM: %v", d.Errors)
	}
}

func TestSyntaxError(t *testing.T) {
	src := doc(ksp, sel+"action: Block") + "---\nkind: [\n"
	docs := policy.ParseBytes("bad.yaml", []byte(src), policy.Options{})
	if len(docs) != 2 || !docs[0].Valid() || docs[1].Valid() || docs[1].Index != 1 {
		t.Fatalf("%+v", docs)
	}
	e := docs[1].Errors[0]
	if !strings.HasPrefix(e.Message, "invalid YAML") || e.Line < 10 {
		t.Errorf("syntax error %+v: want a line number and 'invalid YAML'", e)
	}
	tab := "apiVersion: v1\n\tkind: x\n"
	if d := parseOne(t, tab, policy.Options{}); d.Valid() || d.Errors[0].Line != 2 {
		t.Errorf("tab indentation: %+v", d.Errors)
	}
}

func TestPositionsAndPaths(t *testing.T) {
	src := doc(ksp, "selector:\n  matchLabels:\n    app: web\nfile:\n  matchDirectories:\n    - dir: /etc/\n      recursive: true\n    - dir: /var/\n      recurive: true\n")
	d := parseOne(t, src, policy.Options{})
	want := policy.Issue{Path: "spec.file.matchDirectories[1].recurive", Line: 15, Column: 9, Message: `unknown field "recurive"; did you mean "recursive"?`}
	if len(d.Errors) != 1 || d.Errors[0] != want {
		t.Fatalf("got %+v, want %+v", d.Errors, want)
	}
	if s := d.Errors[0].String(); s != `15:9 spec.file.matchDirectories[1].recurive: unknown field "recurive"; did you mean "recursive"?` {
		t.Errorf("String() = %q", s)
	}
}

func TestWarnings(t *testing.T) {
	noName := "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {namespace: x}\nspec: {action: Block}\n"
	d := parseOne(t, noName, policy.Options{})
	if !d.Valid() || !hasIssue(d.Warnings, "metadata.name", "no name") {
		t.Errorf("missing name: errors %v warnings %v", d.Errors, d.Warnings)
	}
	badName := strings.Replace(doc(ksp, "action: Block"), "name: t", "name: My_Policy", 1)
	d = parseOne(t, badName, policy.Options{})
	if !d.Valid() || !hasIssue(d.Warnings, "metadata.name", "not a valid Kubernetes name") {
		t.Errorf("bad name: errors %v warnings %v", d.Errors, d.Warnings)
	}
	hostNS := strings.Replace(doc(hsp, nodeSel), "namespace: default", "namespace: kube-system", 1)
	d = parseOne(t, hostNS, policy.Options{})
	if !d.Valid() || !hasIssue(d.Warnings, "metadata.namespace", "cluster-scoped") {
		t.Errorf("namespace of a host policy: errors %v warnings %v", d.Errors, d.Warnings)
	}
	meta := "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  generateName: p-\n  uid: 1f\n  resourceVersion: \"5\"\n  generation: 2\n  creationTimestamp: 2024-01-01T00:00:00Z\n  finalizers: [a]\n  ownerReferences: [{apiVersion: v1, kind: X, name: owner, uid: u, controller: true}]\n  managedFields: [{manager: kubectl, fieldsV1: {f:spec: {}}}]\nspec: {}\n"
	d = parseOne(t, meta, policy.Options{})
	if !d.Valid() || len(d.Warnings) != 0 {
		t.Errorf("ObjectMeta fields: errors %v warnings %v", d.Errors, d.Warnings)
	}
}

func TestFirstError(t *testing.T) {
	good := policy.ParseBytes("good.yaml", []byte(doc(ksp, sel+"action: Block")), policy.Options{})
	if err := policy.FirstError(good); err != nil {
		t.Fatalf("FirstError(valid) = %v", err)
	}
	if err := policy.FirstError(nil); err != nil {
		t.Fatalf("FirstError(nil) = %v", err)
	}
	bad := policy.ParseBytes("bad.yaml", []byte(doc(ksp, sel+"action: Block")+"---\n"+doc(ksp, sel+"severity: 0\naction: Nope")), policy.Options{})
	err := policy.FirstError(append(good, bad...))
	if err == nil {
		t.Fatal("FirstError(invalid) = nil")
	}
	msg := err.Error()
	for _, want := range []string{"1 policy document is invalid", "bad.yaml:1 17:13 spec.severity: must be between 1 and 10", "bad.yaml:1 18:11 spec.action: must be one of"} {
		if !strings.Contains(msg, want) {
			t.Errorf("FirstError() = %q, missing %q", msg, want)
		}
	}
	if strings.Contains(msg, "good.yaml") {
		t.Errorf("FirstError lists a valid document: %q", msg)
	}
}

func TestParseFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid := doc(ksp, sel+"action: Block")
	write("b.yaml", valid)
	write("a/nested/c.yml", valid)
	write("a/d.YAML", valid)
	write("notes.txt", "not yaml: [")
	write("README.md", "# hello")
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "linked.yaml"), []byte(valid), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "linked.yaml"), filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "linkdir.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "a", "loop")); err != nil {
		t.Fatal(err)
	}

	docs, err := policy.ParseFiles([]string{dir}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, d := range docs {
		rel, _ := filepath.Rel(dir, d.File)
		files = append(files, rel)
		if !d.Valid() {
			t.Errorf("%s: %v", rel, d.Errors)
		}
	}
	if want := []string{"a/d.YAML", "a/nested/c.yml", "b.yaml", "link.yaml"}; !reflect.DeepEqual(files, want) {
		t.Errorf("files %v, want %v (lexical order, links to files followed, not links to directories)", files, want)
	}

	// A file named directly is read whatever its extension.
	docs, err = policy.ParseFiles([]string{filepath.Join(dir, "notes.txt"), filepath.Join(dir, "b.yaml")}, policy.Options{})
	if err != nil || len(docs) != 2 || docs[0].Valid() || !docs[1].Valid() {
		t.Errorf("explicit files: %v %+v", err, docs)
	}

	if _, err := policy.ParseFiles([]string{filepath.Join(dir, "missing.yaml")}, policy.Options{}); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing path: err = %v", err)
	}
}

func TestFileSizeLimit(t *testing.T) {
	src := []byte(doc(ksp, sel+"action: Block"))
	if d := parseOne(t, string(src), policy.Options{MaxFileSize: int64(len(src))}); !d.Valid() {
		t.Errorf("a file exactly at the limit: %v", d.Errors)
	}
	d := parseOne(t, string(src), policy.Options{MaxFileSize: int64(len(src) - 1)})
	if d.Valid() || !strings.Contains(d.Errors[0].Message, "more than the limit") {
		t.Errorf("a file over the limit: %v", d.Errors)
	}

	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, append([]byte("# "), make([]byte, policy.DefaultMaxFileSize)...), 0o644); err != nil {
		t.Fatal(err)
	}
	docs, err := policy.ParseFiles([]string{big}, policy.Options{})
	if err != nil || len(docs) != 1 || docs[0].Valid() || !strings.Contains(docs[0].Errors[0].Message, "4194306 bytes, more than the limit of 4194304") {
		t.Errorf("default limit: %v %+v", err, docs)
	}

	// A device never ends: the reader must stop at the limit.
	docs, err = policy.ParseFiles([]string{"/dev/zero"}, policy.Options{MaxFileSize: 1 << 10})
	if err != nil || len(docs) != 1 || !strings.Contains(docs[0].Errors[0].Message, "more than the limit of 1024") {
		t.Errorf("/dev/zero: %v %+v", err, docs)
	}
}

// TestAliasBomb: aliases that expand exponentially are refused once the node budget is spent.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: bomb\n")
	b.WriteString("  annotations: {x: &a0 lol}\n")
	b.WriteString("  managedFields:\n  - fieldsV1:\n      l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 9; i++ {
		b.WriteString("      l" + strconv.Itoa(i) + ": &l" + strconv.Itoa(i) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*l" + strconv.Itoa(i-1))
		}
		b.WriteString("]\n")
	}
	b.WriteString("spec: {action: Block}\n")
	d := parseOne(t, b.String(), policy.Options{})
	if d.Valid() || !strings.Contains(d.Errors[0].Message, "expands to more than") {
		t.Fatalf("billion laughs in a free-form field: %v", d.Errors)
	}

	// The same through merge keys, which the validator expands.
	b.Reset()
	b.WriteString("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: bomb}\nspec:\n  file:\n    matchPaths:\n      - &m0 {path: /a, tags: [a, b, c, d, e, f, g, h]}\n")
	for i := 1; i <= 20; i++ {
		prev := "*m" + strconv.Itoa(i-1)
		b.WriteString("      - &m" + strconv.Itoa(i) + " {<<: [" + prev + ", " + prev + ", " + prev + "]}\n")
	}
	d = parseOne(t, b.String(), policy.Options{})
	if d.Valid() || !strings.Contains(d.Errors[0].Message, "expands to more than") {
		t.Fatalf("merge-key bomb: %v", d.Errors)
	}
}

// TestDeepNesting: deep nesting is refused, by the YAML reader or by the validator.
func TestDeepNesting(t *testing.T) {
	deep := "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: deep\n  managedFields: [{fieldsV1: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}]\nspec: {}\n"
	d := parseOne(t, deep, policy.Options{})
	if d.Valid() || !strings.Contains(d.Errors[0].Message, "nested more than 64 levels") {
		t.Errorf("100 levels: %v", d.Errors)
	}
	deeper := "spec: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n"
	d = parseOne(t, deeper, policy.Options{})
	if d.Valid() || !strings.Contains(d.Errors[0].Message, "invalid YAML") {
		t.Errorf("20000 levels: %v", d.Errors)
	}
}

// TestTooManyErrors: a document with thousands of errors reports a bounded number of them.
func TestTooManyErrors(t *testing.T) {
	src := doc(ksp, sel+"tags: ["+strings.Repeat("1, ", 5000)+"1]")
	d := parseOne(t, src, policy.Options{})
	if len(d.Errors) != 101 || !strings.Contains(d.Errors[100].Message, "4901 more errors not shown") {
		t.Errorf("%d errors, last %v", len(d.Errors), d.Errors[len(d.Errors)-1])
	}
}
