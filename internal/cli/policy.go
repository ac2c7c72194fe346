package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/karmor/karmor/pkg/policy"
)

func init() { subcommands = append(subcommands, newPolicyCommand) }

// policySubcommands builds the subcommands of `karmor policy`. Other files add theirs from init
// (policy list, policy explain), so that each lives in its own file.
var policySubcommands = []func() *cobra.Command{newPolicyValidateCommand}

func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with KubeArmor policy files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("policy needs a subcommand; see 'karmor policy --help'")
		},
	}
	for _, add := range policySubcommands {
		cmd.AddCommand(add())
	}
	return cmd
}

type policyValidateOptions struct {
	lenient     bool
	ignoreOther bool
	output      string
}

func newPolicyValidateCommand() *cobra.Command {
	var o policyValidateOptions
	cmd := &cobra.Command{
		Use:   "validate PATH...",
		Short: "Validate KubeArmor policy files strictly, as the API server would",
		Long: `Validate KubeArmor policies (KubeArmorPolicy, KubeArmorHostPolicy, KubeArmorClusterPolicy,
KubeArmorNetworkPolicy) in files and, recursively, in the *.yaml and *.yml files of directories.

Validation enforces the KubeArmor CRDs' schema and, like kubectl --validate=strict, refuses
unknown fields and duplicate keys; --lenient turns those two into warnings.

Exit status: 0 when every document is valid, 1 when any is invalid, 2 for a usage error.`,
		Example: `  karmor policy validate policies/
  karmor policy validate -o json ksp.yaml hsp.yaml
  karmor policy validate --ignore-other manifests/`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("policy validate needs at least one file or directory")
			}
			if o.output != "text" && o.output != "json" {
				return usagef("-o must be text or json, not %q", o.output)
			}
			return runPolicyValidate(cmd.OutOrStdout(), args, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.lenient, "lenient", false, "report unknown fields and duplicate keys as warnings, not errors (the last duplicate wins)")
	f.BoolVar(&o.ignoreOther, "ignore-other", false, "skip documents that are not KubeArmor policies instead of failing on them")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func runPolicyValidate(out io.Writer, paths []string, o policyValidateOptions) error {
	docs, err := policy.ParseFiles(paths, policy.Options{Lenient: o.lenient, IgnoreOther: o.ignoreOther})
	if err != nil {
		return err
	}
	if o.output == "json" {
		err = writeValidationJSON(out, docs)
	} else {
		err = writeValidationText(out, docs)
	}
	if err != nil {
		return err
	}
	if len(docs) == 0 {
		return fmt.Errorf("no policy documents found in %s", strings.Join(paths, ", "))
	}
	if policy.FirstError(docs) != nil {
		return exitError{code: ExitFailure}
	}
	return nil
}

// validationResult is one document in `policy validate -o json`.
type validationResult struct {
	File     string         `json:"file"`
	Doc      int            `json:"doc"`
	Kind     string         `json:"kind"`
	Name     string         `json:"name"`
	Valid    bool           `json:"valid"`
	Errors   []policy.Issue `json:"errors"`
	Warnings []policy.Issue `json:"warnings"`
}

func writeValidationJSON(out io.Writer, docs []policy.Document) error {
	results := make([]validationResult, 0, len(docs))
	for i := range docs {
		d := &docs[i]
		results = append(results, validationResult{
			File: d.File, Doc: d.Index, Kind: d.Kind, Name: d.Name, Valid: d.Valid(),
			Errors: nonNil(d.Errors), Warnings: nonNil(d.Warnings),
		})
	}
	return writeJSON(out, results)
}

// nonNil makes empty issue lists [] rather than null in JSON, which is easier on consumers.
func nonNil(issues []policy.Issue) []policy.Issue {
	if issues == nil {
		return []policy.Issue{}
	}
	return issues
}

func writeValidationText(out io.Writer, docs []policy.Document) error {
	var b strings.Builder
	invalid := 0
	for i := range docs {
		d := &docs[i]
		status := "ok     "
		if !d.Valid() {
			status = "INVALID"
			invalid++
		}
		fmt.Fprintf(&b, "%s %s:%d %s\n", status, d.File, d.Index, describeDocument(d))
		for _, is := range d.Errors {
			fmt.Fprintf(&b, "    error:   %s\n", is)
		}
		for _, is := range d.Warnings {
			fmt.Fprintf(&b, "    warning: %s\n", is)
		}
	}
	fmt.Fprintf(&b, "%d documents, %d valid, %d invalid\n", len(docs), len(docs)-invalid, invalid)
	_, err := io.WriteString(out, b.String())
	return err
}

// describeDocument names a document as kind/name, or says what little is known about it.
func describeDocument(d *policy.Document) string {
	kind, name := d.Kind, d.Name
	if kind == "" {
		kind = "(no kind)"
	}
	if name == "" {
		return kind
	}
	if d.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", kind, d.Namespace, name)
	}
	return kind + " " + name
}
