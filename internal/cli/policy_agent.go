package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/karmor/karmor/pkg/agentapi"
)

// `karmor policy list` and `karmor policy explain` ask karmord about the policies it enforces.

func init() {
	policySubcommands = append(policySubcommands, newPolicyListCommand, newPolicyExplainCommand)
}

type policyAgentOptions struct {
	socket  string
	output  string
	timeout time.Duration
}

func (o *policyAgentOptions) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.socket, "socket", agentapi.DefaultSocket, "karmord's socket")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for karmord's answer")
}

func (o *policyAgentOptions) check() error {
	if o.output != "text" && o.output != "json" {
		return usagef("-o must be text or json, not %q", o.output)
	}
	return nil
}

func (o *policyAgentOptions) client() *agentapi.Client {
	c := agentapi.NewClient(o.socket)
	c.Timeout = o.timeout
	return c
}

func newPolicyListCommand() *cobra.Command {
	var o policyAgentOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Show the policies karmord enforces, where they came from, and its sources' state",
		Long: `Show the policy set karmord has in force: every policy (kind, namespace/name, what it
selects), the source it came from (a directory, or REF@DIGEST of an OCI artifact) and when it was
loaded; and every source with its state and its last error. A failing source keeps its last good
policies in force. When karmord sends KubeArmor its policies (--kubearmor-policy-addr), the
KUBEARMOR column shows KubeArmor's answer for each: Applied, Invalid (KubeArmor refuses it
outside Kubernetes), NotEnabled, Failure, Pending, Away (KubeArmor not reachable) or NotSent
(karmord cannot send it: cluster and network policies, a name already taken), with the reason
below the table.

Exit status: 0 when karmord answered, even if a source is failing (see "failing" in -o json);
1 when karmord cannot be reached.`,
		Example: `  karmor policy list
  karmor policy list -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			state, err := o.client().Policies(ctx)
			if err != nil {
				return containersAgentError(o.socket, err)
			}
			if o.output == "json" {
				return writeJSON(cmd.OutOrStdout(), nonNilPolicyState(state))
			}
			return writePolicyState(cmd.OutOrStdout(), state)
		},
	}
	o.add(cmd)
	return cmd
}

func newPolicyExplainCommand() *cobra.Command {
	var o policyAgentOptions
	var node bool
	cmd := &cobra.Command{
		Use:   "explain CONTAINER | --node",
		Short: "Tell which of karmord's policies apply to a container (or the node) and why the others do not",
		Long: `Explain karmord's policy set for one live container, named by id, unique id prefix or name:
which policies apply, why each other one does not (another namespace, a label missing, a NotIn
expression matched, ...), and the effective rules of the applying policies with the action and
severity each has once KubeArmor's inheritance is resolved.

When karmord sends KubeArmor its policies, each verdict shows KubeArmor's state of the policy,
and "! KubeArmor differs" where KubeArmor, matching as it does outside Kubernetes (matchLabels
only, kubearmor.io/container.name as an unanchored regular expression, namespaces ignored, the
host known only by its name), decides otherwise for this container or node.

With --node, explain host policies (and network policies with a nodeSelector) for the node
karmord runs on, as its --node-name and --node-label flags describe it.`,
		Example: `  karmor policy explain web1
  karmor policy explain 3f2a9c -o json
  karmor policy explain --node`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return err
			}
			if node == (len(args) == 1) {
				return usagef("policy explain needs a container (id, id prefix or name) or --node, not both")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			var e *agentapi.Explanation
			var err error
			if node {
				e, err = o.client().ExplainNode(ctx)
			} else {
				e, err = o.client().Explain(ctx, args[0])
			}
			if err != nil {
				return containersAgentError(o.socket, err)
			}
			if o.output == "json" {
				return writeJSON(cmd.OutOrStdout(), nonNilExplanation(e))
			}
			return writeExplanation(cmd.OutOrStdout(), e)
		},
	}
	o.add(cmd)
	cmd.Flags().BoolVar(&node, "node", false, "explain the node's host policies instead of a container's")
	return cmd
}

// nonNilPolicyState makes empty lists [] rather than null in JSON, which is easier on consumers.
func nonNilPolicyState(s *agentapi.PolicyState) *agentapi.PolicyState {
	if s.Sources == nil {
		s.Sources = []agentapi.PolicySource{}
	}
	if s.Policies == nil {
		s.Policies = []agentapi.PolicyInfo{}
	}
	if s.Node.Labels == nil {
		s.Node.Labels = map[string]string{}
	}
	return s
}

func nonNilExplanation(e *agentapi.Explanation) *agentapi.Explanation {
	if e.Verdicts == nil {
		e.Verdicts = []agentapi.PolicyVerdict{}
	}
	if e.Rules == nil {
		e.Rules = []agentapi.PolicyRule{}
	}
	return e
}

func policyTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func writePolicyState(out io.Writer, s *agentapi.PolicyState) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Policy set generation %d, built %s: %d policies in force on node %s", s.Generation, policyTime(s.BuiltAt),
		len(s.Policies), containerDash(s.Node.Name))
	if len(s.Node.Labels) > 0 {
		fmt.Fprintf(&b, " (%s)", containerLabelList(s.Node.Labels, len(s.Node.Labels)))
	}
	b.WriteString("\n\n")

	if len(s.Sources) == 0 {
		b.WriteString("No policy sources: start karmord with --policy-dir DIR or --policy-ref REF.\n")
	} else {
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tIN FORCE\tPOLICIES\tLOADED\tSTATUS")
		for _, src := range s.Sources {
			inForce := src.Location
			if src.Kind == agentapi.PolicySourceOCI && src.Digest == "" {
				inForce = "(nothing yet)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", src.Name, inForce, src.Policies, policyTime(src.LoadedAt), sourceStatus(src))
		}
		tw.Flush()
		for _, src := range s.Sources {
			if src.SignedBy != "" {
				fmt.Fprintf(&b, "%s: in force signed by %s\n", src.Name, src.SignedBy)
			}
		}
		for _, src := range s.Sources {
			if src.LastError != "" {
				when := "last error"
				if !src.Failing {
					when = "earlier error (since recovered)"
				}
				fmt.Fprintf(&b, "\n%s: %s at %s:\n  %s\n", src.Name, when, policyTime(src.LastErrorAt), src.LastError)
			}
		}
	}

	if len(s.Policies) > 0 {
		b.WriteString("\n")
		inForce := map[string]string{}
		for _, src := range s.Sources {
			inForce[src.Name] = src.Location
		}
		// The KUBEARMOR column is there when karmord sends KubeArmor policies.
		fed := slices.ContainsFunc(s.Policies, func(p agentapi.PolicyInfo) bool { return p.KubeArmor != "" })
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		header := "KIND\tNAMESPACE/NAME\tSELECTS\tRULES\tSOURCE\tFILE\tLOADED"
		if fed {
			header += "\tKUBEARMOR"
		}
		fmt.Fprintln(tw, header)
		for _, p := range s.Policies {
			// The sources' table names the directory or REF@DIGEST; the file is shown within it.
			file := p.File
			if loc := inForce[p.Source]; loc != "" && strings.HasPrefix(file, loc+"/") {
				file = file[len(loc)+1:]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s", p.Kind, policyName(p.Namespace, p.Name), p.Selects, p.Rules, containerDash(p.Source),
				containerDash(file), policyTime(p.LoadedAt))
			if fed {
				fmt.Fprintf(tw, "\t%s", containerDash(p.KubeArmor))
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
		// Why KubeArmor does not enforce a policy, once per policy.
		for _, p := range s.Policies {
			if p.KubeArmorDetail != "" {
				fmt.Fprintf(&b, "\nKubeArmor: %s %s: %s: %s", p.Kind, policyName(p.Namespace, p.Name), p.KubeArmor, p.KubeArmorDetail)
			}
		}
		if fed && slices.ContainsFunc(s.Policies, func(p agentapi.PolicyInfo) bool { return p.KubeArmorDetail != "" }) {
			b.WriteString("\n")
		}
	}
	if len(s.Duplicates) > 0 {
		fmt.Fprintf(&b, "\nDefined more than once (every copy applies): %s\n", strings.Join(s.Duplicates, ", "))
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// sourceStatus says in a few words how a source's checks go.
func sourceStatus(src agentapi.PolicySource) string {
	switch {
	case src.Failing && src.FromCache:
		return "FAILING (cached policies in force)"
	case src.Failing && src.Digest != "":
		return "FAILING (last good policies in force)"
	case src.Failing:
		return "FAILING"
	case src.FromCache:
		return "from cache (registry not confirmed yet)"
	case src.LastSuccess.IsZero() && src.LoadedAt.IsZero():
		return "not checked yet"
	}
	return "ok"
}

func policyName(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

func writeExplanation(out io.Writer, e *agentapi.Explanation) error {
	var b strings.Builder
	applying := 0
	for _, v := range e.Verdicts {
		if v.Applies {
			applying++
		}
	}
	switch {
	case e.Container != nil:
		c := e.Container
		where := "outside Kubernetes"
		if c.Namespace != "" {
			where = "pod " + containerPod(c)
		}
		fmt.Fprintf(&b, "Container %s (%s), %s", containerDash(c.Name), containerShortID(c.ID), where)
		if len(c.Labels) > 0 {
			fmt.Fprintf(&b, ", labels %s", containerLabelList(c.Labels, len(c.Labels)))
		}
		b.WriteString("\n")
	case e.Node != nil:
		fmt.Fprintf(&b, "Node %s", containerDash(e.Node.Name))
		if len(e.Node.Labels) > 0 {
			fmt.Fprintf(&b, ", labels %s", containerLabelList(e.Node.Labels, len(e.Node.Labels)))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Policy set generation %d: %d of %d policies apply.\n", e.Generation, applying, len(e.Verdicts))

	if len(e.Verdicts) > 0 {
		b.WriteString("\n")
		for _, v := range e.Verdicts {
			verdict := "does not apply"
			if v.Applies {
				verdict = "APPLIES"
			}
			fmt.Fprintf(&b, "%-14s  %s %s (selects %s)", verdict, v.Kind, policyName(v.Namespace, v.Name), v.Selects)
			if v.KubeArmor != "" {
				fmt.Fprintf(&b, " [KubeArmor: %s]", v.KubeArmor)
			}
			b.WriteString("\n")
			for _, r := range v.Reasons {
				fmt.Fprintf(&b, "%-14s    - %s\n", "", r)
			}
			if v.KubeArmorDiffers != "" {
				fmt.Fprintf(&b, "%-14s    ! KubeArmor differs: %s\n", "", v.KubeArmorDiffers)
			}
		}
	}

	if len(e.Rules) > 0 {
		fmt.Fprintf(&b, "\nEffective rules (%d):\n", len(e.Rules))
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACTION\tSEVERITY\tTYPE\tMATCH\tPOLICY\tDETAILS")
		for _, r := range e.Rules {
			sev := "-"
			if r.Severity != 0 {
				sev = fmt.Sprint(r.Severity)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Action, sev, r.Type, ruleMatch(r), strings.Join(shortPolicyIDs([]string{r.Policy}), ""), containerDash(ruleDetails(r)))
		}
		tw.Flush()
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// ruleMatch is what a rule matches, e.g. "path /bin/sh" or "syscall unlink,rmdir".
func ruleMatch(r agentapi.PolicyRule) string {
	value := r.Value
	if len(r.Syscalls) > 0 {
		value = strings.Join(r.Syscalls, ",")
	}
	if value == "" {
		return r.Match
	}
	return r.Match + " " + value
}

// ruleDetails lists a rule's qualifiers: fromSource, ownerOnly, readOnly, recursive, tags.
func ruleDetails(r agentapi.PolicyRule) string {
	var parts []string
	for _, s := range r.FromSource {
		from := s.Path
		if from == "" {
			from = s.Dir
		}
		parts = append(parts, "from "+from)
	}
	if len(r.AllowedArgs) > 0 {
		parts = append(parts, "args "+strings.Join(r.AllowedArgs, " "))
	}
	if r.OwnerOnly {
		parts = append(parts, "ownerOnly")
	}
	if r.ReadOnly {
		parts = append(parts, "readOnly")
	}
	if r.Recursive {
		parts = append(parts, "recursive")
	}
	if len(r.Tags) > 0 {
		parts = append(parts, "tags "+strings.Join(r.Tags, ","))
	}
	if r.Message != "" {
		parts = append(parts, fmt.Sprintf("message %q", r.Message))
	}
	return strings.Join(parts, "; ")
}
