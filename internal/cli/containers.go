package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/karmor/karmor/pkg/agentapi"
)

func init() { subcommands = append(subcommands, newContainersCommand) }

type containersOptions struct {
	socket  string
	output  string
	watch   bool
	fromSeq uint64
	timeout time.Duration
	// annotations asks for every container's annotations whole, which a list carries only slim.
	annotations bool
}

func newContainersCommand() *cobra.Command {
	o := containersOptions{socket: agentapi.DefaultSocket, output: "table", timeout: 10 * time.Second}
	cmd := &cobra.Command{
		Use:   "containers [ID|NAME]",
		Short: "List the containers karmord knows and the policies that apply to them, or watch them",
		Long: `List the live containers karmord knows (from karmor-hook, its spool and the runtimes' state),
or one of them by id, unique id prefix or name, with the policies of karmord's policy set that
apply to each (POLICIES; "policies" in JSON). 'karmor policy explain CONTAINER' says why.
When karmord feeds KubeArmor (--kubearmor-socket), KUBEARMOR ("kubearmor" in JSON) says whether
KubeArmor has each container: yes, pending (on its way), or away (KubeArmor is not reachable).

With -w, watch instead, one line each (JSON lines with -o json), until interrupted: first the
live containers ("listed"), then every start and stop after them, without a gap or a repeat,
and every change of karmord's policy sources ("policy", or "policy-error" when a source
failed and its last good policies stay in force). Each line carries its sequence number;
--from-seq N resumes after event N instead of listing (0: the recent events karmord retains).

A listing and the watch carry each container's annotations only up to 1 KiB per value and 4 KiB
per container; "annotations_omitted" in JSON counts the ones left out. 'karmor containers ID'
shows one container's annotations whole, and --annotations (with -o json) every container's.`,
		Example: `  karmor containers
  karmor containers web1 -o json
  karmor containers -o json --annotations
  karmor containers -w
  karmor containers -w -o json --from-seq 1234`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "table" && o.output != "json" {
				return usagef("-o %q: want table or json", o.output)
			}
			if o.watch && len(args) > 0 {
				return usagef("-w streams every container's events; it takes no container argument")
			}
			if o.annotations && (o.watch || o.output != "json") {
				return usagef("--annotations applies to a listing with -o json (watched events carry annotations slim)")
			}
			if !o.watch && cmd.Flags().Changed("from-seq") {
				return usagef("--from-seq only applies with -w")
			}
			if o.watch {
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return watchContainers(ctx, o, !cmd.Flags().Changed("from-seq"), cmd.OutOrStdout())
			}
			ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
			defer cancel()
			if len(args) == 1 {
				return showContainer(ctx, o, args[0], cmd.OutOrStdout())
			}
			if err := listContainers(ctx, o, cmd.OutOrStdout()); err != nil {
				return err
			}
			if o.output == "table" {
				warnFailingPolicySources(ctx, o.socket, cmd.ErrOrStderr())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.socket, "socket", o.socket, "karmord's socket")
	f.StringVarP(&o.output, "output", "o", o.output, "output format: table or json")
	f.BoolVarP(&o.watch, "watch", "w", false, "stream container events until interrupted")
	f.Uint64Var(&o.fromSeq, "from-seq", 0, "with -w, resume after this event sequence number instead of listing first (0: from the retained events)")
	f.BoolVar(&o.annotations, "annotations", false, "with -o json, every container's annotations whole (a listing cuts them to 1 KiB per value, 4 KiB per container)")
	f.DurationVar(&o.timeout, "timeout", o.timeout, "how long to wait for karmord's answer (not for -w)")
	return cmd
}

// containersAgentError turns a client error into one that tells the user what to do.
func containersAgentError(socket string, err error) error {
	var ae *agentapi.AgentError
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("karmord not reachable at %s: is karmord running? start it with 'karmord --socket %s' (as root), or point --socket at its socket", socket, socket)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("karmord's socket %s is not accessible to you: run as root, or ask for karmord to be started with --allow-uid %d (or --socket-group and --allow-gid with your group)", socket, os.Getuid())
	}
	return err
}

func listContainers(ctx context.Context, o containersOptions, out io.Writer) error {
	cl := agentapi.NewClient(o.socket)
	list, err := cl.List(ctx)
	if err != nil {
		return containersAgentError(o.socket, err)
	}
	if o.annotations {
		if err := fetchAnnotations(ctx, cl, list); err != nil {
			return containersAgentError(o.socket, err)
		}
	}
	if o.output == "json" {
		views := make([]containerView, len(list))
		for i := range list {
			views[i] = containerViewOf(&list[i])
		}
		return writeJSON(out, views)
	}
	return writeContainerTable(out, list)
}

// fetchAnnotations replaces the slim annotations of the listed containers that had some left out
// with all of them, asking karmord for each such container. A container that stopped since the
// listing keeps its slim annotations (and its annotations_omitted count).
func fetchAnnotations(ctx context.Context, cl *agentapi.Client, list []agentapi.Container) error {
	for i := range list {
		c := &list[i]
		if c.AnnotationsOmitted == 0 {
			continue
		}
		whole, err := cl.Get(ctx, c.ID)
		if errors.Is(err, agentapi.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		c.Annotations, c.AnnotationsOmitted = whole.Annotations, whole.AnnotationsOmitted
	}
	return nil
}

// warnFailingPolicySources tells, under the table, which of karmord's policy sources are failing:
// the POLICIES column then shows their last good policies, not what the source holds now. It is
// best effort: a karmord that cannot say is not an error of the listing.
func warnFailingPolicySources(ctx context.Context, socket string, errOut io.Writer) {
	state, err := agentapi.NewClient(socket).Policies(ctx)
	if err != nil {
		return
	}
	for _, src := range state.Sources {
		if src.Failing {
			fmt.Fprintf(errOut, "Warning: policy source %s is failing (its last good policies stay in force; 'karmor policy list' has the details): %s\n",
				src.Name, src.LastError)
		}
	}
}

func showContainer(ctx context.Context, o containersOptions, key string, out io.Writer) error {
	c, err := agentapi.NewClient(o.socket).Get(ctx, key)
	if errors.Is(err, agentapi.ErrNotFound) {
		return fmt.Errorf("karmord knows no live container with id, id prefix or name %q; 'karmor containers' lists them", key)
	}
	if err != nil {
		return containersAgentError(o.socket, err)
	}
	if o.output == "json" {
		return writeJSON(out, containerViewOf(c))
	}
	return writeContainerTable(out, []agentapi.Container{*c})
}

// watchContainers streams events. With list, it first prints the live containers and then
// watches from the sequence number the list reflects, so that nothing is missed or repeated.
func watchContainers(ctx context.Context, o containersOptions, list bool, out io.Writer) error {
	cl := agentapi.NewClient(o.socket)
	from := o.fromSeq
	if list {
		listCtx, cancel := context.WithTimeout(ctx, o.timeout)
		snap, err := cl.ListSnapshot(listCtx)
		cancel()
		if err != nil {
			return containersAgentError(o.socket, err)
		}
		now := time.Now()
		for i := range snap.Containers {
			if err := writeWatched(out, o.output, &agentapi.Envelope{Type: agentapi.TypeEvent, Seq: snap.Seq,
				Event: &agentapi.Event{Kind: containerListed, Time: now, Source: snap.Containers[i].Source, Container: snap.Containers[i]}}); err != nil {
				return err
			}
		}
		from = snap.Seq
	}
	err := cl.Watch(ctx, from, func(env *agentapi.Envelope) error { return writeWatched(out, o.output, env) })
	if ctx.Err() != nil {
		return nil // interrupted: the normal end of a watch
	}
	var ae *agentapi.AgentError
	if errors.As(err, &ae) {
		return fmt.Errorf("karmord ended the watch: %s", ae.Msg)
	}
	return containersAgentError(o.socket, err)
}

// containerListed is the kind of the watch lines that show the containers live when the watch
// began.
const containerListed = "listed"

// Kinds of the watch lines about policy sources.
const (
	containerPolicyChanged = "policy"
	containerPolicyFailed  = "policy-error"
)

// writeWatched prints one stream entry; entries of kinds this karmor does not know are skipped.
func writeWatched(out io.Writer, format string, env *agentapi.Envelope) error {
	switch {
	case env.Event != nil:
		if format == "json" {
			return writeContainerJSONLine(out, containerEventView{Seq: env.Seq, Kind: env.Event.Kind, Stage: env.Event.Stage, Time: env.Event.Time,
				Source: env.Event.Source, Container: containerViewOf(&env.Event.Container)})
		}
		_, err := fmt.Fprintln(out, containerEventLine(env))
		return err
	case env.PolicyChange != nil:
		pc := env.PolicyChange
		kind := containerPolicyChanged
		if pc.Error != "" {
			kind = containerPolicyFailed
		}
		if format == "json" {
			return writeContainerJSONLine(out, policyChangeView{Seq: env.Seq, Kind: kind, Time: pc.Time, PolicyChange: pc})
		}
		_, err := fmt.Fprintln(out, policyChangeLine(env.Seq, kind, pc))
		return err
	}
	return nil
}

// containerView is the JSON form of a container. Its first fields are always present, even when
// empty, so that scripts can rely on them.
type containerView struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	PID        int               `json:"pid"`
	Namespaces map[string]uint64 `json:"namespaces"`
	Pod        string            `json:"pod"`
	Namespace  string            `json:"namespace"`
	Labels     map[string]string `json:"labels"`
	Image      string            `json:"image"`
	Source     string            `json:"source"`
	// Policies are the IDs of the policies of karmord's set in force that apply.
	Policies []string `json:"policies"`

	ContainerName string            `json:"container_name,omitempty"`
	PodUID        string            `json:"pod_uid,omitempty"`
	PIDStart      uint64            `json:"pid_start,omitempty"`
	CgroupPath    string            `json:"cgroup_path,omitempty"`
	Created       time.Time         `json:"created,omitzero"`
	Bundle        string            `json:"bundle,omitempty"`
	AppArmor      string            `json:"apparmor_profile,omitempty"`
	Privileged    bool              `json:"privileged,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	// AnnotationsOmitted counts the annotations a listing or a watched event leaves out.
	AnnotationsOmitted int `json:"annotations_omitted,omitempty"`
	// KubeArmor is whether KubeArmor has the container, when karmord feeds it.
	KubeArmor string `json:"kubearmor,omitempty"`
}

func containerViewOf(c *agentapi.Container) containerView {
	v := containerView{ID: c.ID, Name: c.Name, PID: c.PID, Namespaces: c.Namespaces, Pod: c.Pod, Namespace: c.Namespace,
		Labels: c.Labels, Image: c.Image, Source: c.Source, ContainerName: c.ContainerName, PodUID: c.PodUID, PIDStart: c.PIDStart,
		CgroupPath: c.CgroupPath, Created: c.Created, Bundle: c.Bundle, AppArmor: c.AppArmor, Privileged: c.Privileged, Annotations: c.Annotations,
		AnnotationsOmitted: c.AnnotationsOmitted, KubeArmor: c.KubeArmor}
	if v.Namespaces == nil {
		v.Namespaces = map[string]uint64{}
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	v.Policies = c.Policies
	if v.Policies == nil {
		v.Policies = []string{}
	}
	return v
}

// policyChangeView is the JSON line of a policy source's change in a watch.
type policyChangeView struct {
	Seq          uint64                 `json:"seq"`
	Kind         string                 `json:"kind"`
	Time         time.Time              `json:"time"`
	PolicyChange *agentapi.PolicyChange `json:"policy_change"`
}

type containerEventView struct {
	Seq       uint64        `json:"seq"`
	Kind      string        `json:"kind"`
	Stage     string        `json:"stage,omitempty"`
	Time      time.Time     `json:"time"`
	Source    string        `json:"source"`
	Container containerView `json:"container"`
}

func writeContainerJSONLine(out io.Writer, v any) error {
	return json.NewEncoder(out).Encode(v)
}

// containerShortID is the first 12 characters of an id, as container tools show them.
func containerShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func containerDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// containerPod is "namespace/pod" for Kubernetes containers.
func containerPod(c *agentapi.Container) string {
	switch {
	case c.Pod == "":
		return "-"
	case c.Namespace == "":
		return c.Pod
	}
	return c.Namespace + "/" + c.Pod
}

func writeContainerTable(out io.Writer, list []agentapi.Container) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	// The KUBEARMOR column appears only when karmord feeds KubeArmor.
	fed := slices.ContainsFunc(list, func(c agentapi.Container) bool { return c.KubeArmor != "" })
	kubearmorHeader := ""
	if fed {
		kubearmorHeader = "\tKUBEARMOR"
	}
	fmt.Fprintf(tw, "ID\tNAME\tPID\tPOD\tIMAGE\tLABELS\tPOLICIES%s\tSOURCE\tCREATED\n", kubearmorHeader)
	for i := range list {
		c := &list[i]
		created := "-"
		if !c.Created.IsZero() {
			created = c.Created.UTC().Format(time.RFC3339)
		}
		kubearmorState := ""
		if fed {
			kubearmorState = "\t" + containerDash(c.KubeArmor)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s%s\t%s\t%s\n", containerShortID(c.ID), containerDash(c.Name), c.PID, containerPod(c), containerDash(c.Image),
			containerDash(containerLabelList(c.Labels, 3)), containerDash(containerPolicyList(c.Policies, 3)), kubearmorState, containerDash(c.Source), created)
	}
	return tw.Flush()
}

// containerLabelList shows up to max labels as k=v, sorted, and how many more there are.
func containerLabelList(labels map[string]string, max int) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for i, k := range keys {
		if i == max {
			parts = append(parts, fmt.Sprintf("+%d", len(keys)-max))
			break
		}
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// containerEventLine is one watched event in a line: time, kind, id, name, pid, pod, source,
// policies, seq.
func containerEventLine(env *agentapi.Envelope) string {
	ev := env.Event
	c := &ev.Container
	return fmt.Sprintf("%s  %-6s  %-12s  %-20s  pid=%-7d  pod=%s  source=%s  policies=%s  seq=%d",
		ev.Time.UTC().Format(time.RFC3339Nano), ev.Kind, containerShortID(c.ID), containerDash(c.Name), c.PID, containerPod(c), containerDash(ev.Source),
		containerDash(strings.Join(shortPolicyIDs(c.Policies), ",")), env.Seq)
}

// policyChangeLine is one policy source change in a line: time, kind, source, what is in force
// (and the error, when the source failed), seq.
func policyChangeLine(seq uint64, kind string, pc *agentapi.PolicyChange) string {
	line := fmt.Sprintf("%s  %-6s  %s  generation=%d  digest=%s  policies=%d  total=%d", pc.Time.UTC().Format(time.RFC3339Nano), kind, pc.Source,
		pc.Generation, containerDash(shortDigest(pc.Digest)), pc.Policies, pc.Total)
	if pc.FromCache {
		line += "  from-cache"
	}
	if pc.Error != "" {
		line += fmt.Sprintf("  error=%q (the last good policies stay in force)", pc.Error)
	}
	return line + fmt.Sprintf("  seq=%d", seq)
}

// shortDigest is "sha256:" and the first 12 hex digits, as container tools show digests.
func shortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return algo + ":" + hex[:12]
}

// policyKindAbbrev are KubeArmor's usual short names for its policy kinds.
var policyKindAbbrev = map[string]string{
	"KubeArmorPolicy":        "ksp",
	"KubeArmorClusterPolicy": "csp",
	"KubeArmorHostPolicy":    "hsp",
	"KubeArmorNetworkPolicy": "knp",
}

// shortPolicyIDs writes policy IDs (KIND/NAMESPACE/NAME) with the kind abbreviated, for tables.
func shortPolicyIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		kind, rest, ok := strings.Cut(id, "/")
		if abbrev, known := policyKindAbbrev[kind]; ok && known {
			id = abbrev + "/" + rest
		}
		out[i] = id
	}
	return out
}

// containerPolicyList shows up to max policies, abbreviated, and how many more there are.
func containerPolicyList(ids []string, max int) string {
	short := shortPolicyIDs(ids)
	if len(short) > max {
		short = append(short[:max], fmt.Sprintf("+%d", len(ids)-max))
	}
	return strings.Join(short, ",")
}
