package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/testutil"
)

func runKarmor(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func testPolicies(t *testing.T, rel string) string {
	return filepath.Join(testutil.RepoRoot(t), "testdata", "policies", rel)
}

func TestPolicyValidateExitCodes(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		out  []string // pieces of stdout
		err  []string // pieces of stderr
	}{
		{"valid directory", []string{"policy", "validate", testPolicies(t, "valid")}, ExitOK,
			[]string{"ok      ", "valid/ksp-web.yaml:0 KubeArmorPolicy shop/ksp-web-hardening", "valid/multi.yml:2 KubeArmorPolicy default/ksp-nulls", "7 documents, 7 valid, 0 invalid"}, nil},
		{"invalid file", []string{"policy", "validate", testPolicies(t, "invalid/ksp-typos.yaml")}, ExitFailure,
			[]string{"INVALID ", "ksp-typos.yaml:0 KubeArmorPolicy default/ksp-typos", "    error:   16:9 spec.file.matchDirectories[0].recurive: unknown field \"recurive\"; did you mean \"recursive\"?", "1 documents, 0 valid, 1 invalid"}, nil},
		{"valid and invalid", []string{"policy", "validate", testPolicies(t, "valid/hsp-node.yaml"), testPolicies(t, "invalid/hsp-host-rules.yaml")}, ExitFailure,
			[]string{"2 documents, 1 valid, 1 invalid", "spec.nodeSelector: required field \"nodeSelector\" is missing"}, nil},
		{"lenient turns duplicates into warnings", []string{"policy", "validate", "--lenient", testPolicies(t, "invalid/ksp-duplicates.yaml")}, ExitOK,
			[]string{"ok      ", "    warning: 17:3 spec.action: duplicate key \"action\""}, nil},
		{"lenient still refuses bad values", []string{"policy", "validate", "--lenient", testPolicies(t, "invalid/ksp-values.yaml")}, ExitFailure,
			[]string{"INVALID", "spec.action: must be one of Allow, Audit, Block"}, nil},
		{"other documents fail", []string{"policy", "validate", testPolicies(t, "mixed")}, ExitFailure,
			[]string{"INVALID ", "manifests.yaml:0 Deployment web", "not a KubeArmor policy", "skip such documents with --ignore-other"}, nil},
		{"ignore other documents", []string{"policy", "validate", "--ignore-other", testPolicies(t, "mixed")}, ExitOK,
			[]string{"manifests.yaml:1 KubeArmorPolicy default/ksp-web", "1 documents, 1 valid, 0 invalid"}, nil},
		{"broken YAML", []string{"policy", "validate", testPolicies(t, "invalid/broken.yaml")}, ExitFailure,
			[]string{"broken.yaml:1 (no kind)", "error:   15 invalid YAML"}, nil},
		{"missing path", []string{"policy", "validate", testPolicies(t, "nope.yaml")}, ExitFailure,
			nil, []string{"Error: cannot read policies", "nope.yaml: no such file or directory"}},
		{"no documents", []string{"policy", "validate", t.TempDir()}, ExitFailure,
			[]string{"0 documents"}, []string{"no policy documents found"}},
		{"no paths", []string{"policy", "validate"}, ExitUsage, nil, []string{"needs at least one file or directory"}},
		{"bad output format", []string{"policy", "validate", "-o", "yaml", testPolicies(t, "valid")}, ExitUsage, nil, []string{"-o must be text or json"}},
		{"unknown flag", []string{"policy", "validate", "--strict", testPolicies(t, "valid")}, ExitUsage, nil, []string{"unknown flag: --strict"}},
		{"policy without subcommand", []string{"policy"}, ExitUsage, nil, []string{"policy needs a subcommand"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runKarmor(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, out, errOut)
			}
			for _, want := range c.out {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			for _, want := range c.err {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
		})
	}
}

type jsonIssue struct {
	Path    string `json:"path"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

type jsonResult struct {
	File     string      `json:"file"`
	Doc      int         `json:"doc"`
	Kind     string      `json:"kind"`
	Name     string      `json:"name"`
	Valid    bool        `json:"valid"`
	Errors   []jsonIssue `json:"errors"`
	Warnings []jsonIssue `json:"warnings"`
}

func TestPolicyValidateJSON(t *testing.T) {
	code, out, errOut := runKarmor(t, "policy", "validate", "-o", "json", testPolicies(t, "valid/knp-bandwidth.yaml"), testPolicies(t, "invalid/ksp-typos.yaml"))
	if code != ExitFailure || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var raw []map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("output is not a JSON array: %v\n%s", err, out)
	}
	for _, obj := range raw {
		for _, key := range []string{"file", "doc", "kind", "name", "valid", "errors", "warnings"} {
			if _, ok := obj[key]; !ok {
				t.Errorf("object lacks %q: %v", key, obj)
			}
		}
		if obj["errors"] == nil || obj["warnings"] == nil {
			t.Errorf("errors and warnings must be arrays, not null: %v", obj)
		}
	}
	var results []jsonResult
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 {
		t.Fatalf("%d results, want 3", len(results))
	}
	if r := results[1]; r.Doc != 1 || r.Kind != "KubeArmorNetworkPolicy" || r.Name != "knp-node-ssh" || !r.Valid || len(r.Errors) != 0 || !strings.HasSuffix(r.File, "knp-bandwidth.yaml") {
		t.Errorf("second document: %+v", r)
	}
	r := results[2]
	if r.Valid || r.Kind != "KubeArmorPolicy" || r.Name != "ksp-typos" || len(r.Errors) != 5 {
		t.Fatalf("invalid document: %+v", r)
	}
	want := jsonIssue{Path: "spec.file.matchDirectories[0].recurive", Line: 16, Column: 9, Message: `unknown field "recurive"; did you mean "recursive"?`}
	if r.Errors[2] != want {
		t.Errorf("error = %+v, want %+v", r.Errors[2], want)
	}
}

// TestPolicyValidateCorpus runs the CLI over the shared corpus: 485 documents, 54 invalid.
func TestPolicyValidateCorpus(t *testing.T) {
	dir := filepath.Join(testutil.SharedDir(t, "corpus"), "policy-templates")
	code, out, _ := runKarmor(t, "policy", "validate", "-o", "json", dir)
	if code != ExitFailure {
		t.Errorf("exit %d, want %d", code, ExitFailure)
	}
	var results []jsonResult
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatal(err)
	}
	invalid := 0
	for _, r := range results {
		if !r.Valid {
			invalid++
		}
	}
	if len(results) != 485 || invalid != 54 {
		t.Errorf("%d documents, %d invalid; want 485 and 54", len(results), invalid)
	}
	code, out, _ = runKarmor(t, "policy", "validate", "--lenient", dir)
	if code != ExitFailure || !strings.Contains(out, "485 documents, 457 valid, 28 invalid") {
		t.Errorf("lenient: exit %d, summary %q", code, out[strings.LastIndex(out[:len(out)-1], "\n")+1:])
	}
}
