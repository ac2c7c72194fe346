package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/signing"
)

func init() { subcommands = append(subcommands, newOCICommand) }

func newOCICommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "oci",
		Short: "Push, pull and inspect KubeArmor policies stored as OCI artifacts",
		Long: `Store KubeArmor policies in any OCI registry (Docker Hub, GHCR, ECR, GitLab, Harbor, a local
registry): one artifact holds a set of policy files, one layer per file, in the format of
kubearmor-client's proposal, so the ORAS CLI reads and writes it too.

References are read as Docker reads them: "team/policies" is docker.io/team/policies:latest,
"localhost:5000/p" is a registry on this host. Credentials from 'docker login' are used
(config.json, credsStore, credHelpers), or -u with -p/--password-stdin.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("oci needs a subcommand; see 'karmor oci --help'")
		},
	}
	cmd.AddCommand(newOCIPushCommand(), newOCIPullCommand(), newOCIInspectCommand(), newOCISignCommand(), newOCIVerifyCommand())
	return cmd
}

// registryFlags are the flags every oci command shares: what to talk to and how.
type registryFlags struct {
	image         string
	format        string
	transport     oci.TransportOptions
	passwordStdin bool
	timeout       time.Duration
}

func (r *registryFlags) add(f *pflag.FlagSet) {
	f.StringVarP(&r.image, "image", "i", "", "artifact reference, REGISTRY/REPOSITORY[:TAG][@DIGEST] (required)")
	f.StringVar(&r.format, "format", "text", "output format: text or json")
	f.BoolVar(&r.transport.PlainHTTP, "plain-http", false, "talk plain HTTP, not HTTPS (also: "+oci.EnvPlainHTTP+"=true)")
	f.BoolVar(&r.transport.Insecure, "insecure", false, "use TLS without verifying the registry's certificate")
	f.StringVar(&r.transport.CAFile, "ca-file", "", "PEM file of a CA to trust for the registry's certificate")
	f.StringVarP(&r.transport.Username, "username", "u", "", "registry user name (default: credentials from 'docker login')")
	f.StringVarP(&r.transport.Password, "password", "p", "", "registry password or token (prefer --password-stdin)")
	f.BoolVar(&r.passwordStdin, "password-stdin", false, "read the password from standard input")
	f.StringVar(&r.transport.DockerConfig, "registry-config", "", "Docker config.json to read credentials from (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	f.IntVar(&r.transport.Concurrency, "concurrency", oci.DefaultConcurrency, "number of blobs transferred at once")
	f.DurationVar(&r.timeout, "timeout", 10*time.Minute, "give up after this long")
}

// parse checks the shared flags, reads a password from stdin if asked, and returns the
// reference.
func (r *registryFlags) parse(cmd *cobra.Command) (oci.Reference, error) {
	if r.image == "" {
		return oci.Reference{}, usagef("-i/--image REF is required")
	}
	if r.format != "text" && r.format != "json" {
		return oci.Reference{}, usagef("--format must be text or json, not %q", r.format)
	}
	if r.transport.Concurrency < 1 {
		return oci.Reference{}, usagef("--concurrency must be at least 1")
	}
	ref, err := oci.ParseReference(r.image)
	if err != nil {
		return oci.Reference{}, usagef("%v", err)
	}
	if r.passwordStdin {
		if r.transport.Password != "" {
			return oci.Reference{}, usagef("--password and --password-stdin are exclusive")
		}
		password, err := readPassword(cmd.InOrStdin())
		if err != nil {
			return oci.Reference{}, err
		}
		r.transport.Password = password
	} else if r.transport.Password != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "Warning: a password on the command line is visible to other users; prefer --password-stdin.")
	}
	if (r.transport.Username == "") != (r.transport.Password == "") {
		return oci.Reference{}, usagef("-u/--username and a password (-p or --password-stdin) go together")
	}
	return ref, nil
}

// readPassword reads one line from stdin, bounded: a password is not a stream.
func readPassword(in io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(in, 64<<10+1))
	if err != nil {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	if len(data) > 64<<10 {
		return "", usagef("--password-stdin: more than 64 KiB on stdin")
	}
	password := strings.TrimRight(string(data), "\r\n")
	if password == "" {
		return "", usagef("--password-stdin: stdin is empty")
	}
	return password, nil
}

// context returns the command's context, cancelled by the timeout, Ctrl-C or SIGTERM.
func (r *registryFlags) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	return ctx, func() { cancel(); stop() }
}

// sizeFlag is a byte count given as 4194304, 4MiB, 4M, 512KiB or 1GiB.
type sizeFlag struct{ bytes *int64 }

func (s sizeFlag) String() string {
	if s.bytes == nil {
		return ""
	}
	return strconv.FormatInt(*s.bytes, 10)
}

func (s sizeFlag) Type() string { return "size" }

func (s sizeFlag) Set(v string) error {
	units := []struct {
		suffix string
		factor int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	factor := int64(1)
	number := strings.TrimSpace(v)
	for _, u := range units {
		if strings.HasSuffix(number, u.suffix) {
			number, factor = strings.TrimSuffix(number, u.suffix), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(number), 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/factor {
		return fmt.Errorf("%q is not a size such as 4194304, 512KiB or 8MiB", v)
	}
	*s.bytes = n * factor
	return nil
}

// --- push ---

type ociPushFlags struct {
	registryFlags
	signFlags
	files        []string
	annotations  []string
	source       string
	revision     string
	version      string
	created      string
	skipValidate bool
	maxFileSize  int64
}

func newOCIPushCommand() *cobra.Command {
	o := ociPushFlags{maxFileSize: oci.DefaultMaxLayerSize}
	cmd := &cobra.Command{
		Use:   "push -i REF -f FILE|DIR [-f FILE|DIR ...]",
		Short: "Validate policy files and push them as one OCI artifact",
		Long: `Push policy files as one artifact, one layer per file, titled with the file's base name.
A directory is walked for *.yaml and *.yml files. Every file is validated strictly
(as 'karmor policy validate' does) while the blobs go up; the manifest, and so the tag,
is pushed only when every file is valid.

Prints the reference pinned to the pushed manifest's digest (REF@sha256:...): deploy that
to get exactly these files, whatever the tag later points to.`,
		Example: `  karmor oci push -i localhost:5000/myimage:latest -f mypolicy.yaml
  karmor oci push -i ghcr.io/team/policies:v1 -f policies/ --source https://github.com/team/policies --revision "$(git rev-parse HEAD)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runOCIPush(cmd, &o) },
	}
	f := cmd.Flags()
	o.registryFlags.add(f)
	f.StringArrayVarP(&o.files, "file", "f", nil, "policy file or directory (repeatable, required)")
	f.StringArrayVar(&o.annotations, "annotation", nil, "manifest annotation KEY=VALUE (repeatable)")
	f.StringVar(&o.source, "source", "", "URL of the policies' source, as the org.opencontainers.image.source annotation")
	f.StringVar(&o.revision, "revision", "", "source revision (e.g. a commit), as the org.opencontainers.image.revision annotation")
	f.StringVar(&o.version, "version", "", "version of the policy set, as the org.opencontainers.image.version annotation")
	f.StringVar(&o.created, "created", "", "creation time, RFC 3339 (default now; a fixed time makes pushes of the same files reproducible)")
	f.BoolVar(&o.skipValidate, "skip-validate", false, "push files without validating them")
	f.Var(sizeFlag{&o.maxFileSize}, "max-layer-size", "largest policy file accepted (pull refuses larger layers unless given the same)")
	o.signFlags.add(f, "sign-key")
	return cmd
}

func runOCIPush(cmd *cobra.Command, o *ociPushFlags) error {
	ref, err := o.parse(cmd)
	if err != nil {
		return err
	}
	if len(o.files) == 0 {
		return usagef("-f/--file FILE|DIR is required")
	}
	opts := oci.PushOptions{
		Transport: o.transport, Source: o.source, Revision: o.revision, Version: o.version,
		SkipValidate: o.skipValidate, Concurrency: o.transport.Concurrency, Annotations: map[string]string{},
	}
	for _, a := range o.annotations {
		key, value, ok := strings.Cut(a, "=")
		if !ok || key == "" {
			return usagef("--annotation %q: want KEY=VALUE", a)
		}
		opts.Annotations[key] = value
	}
	if o.created != "" {
		if opts.Created, err = time.Parse(time.RFC3339, o.created); err != nil {
			return usagef("--created %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", o.created)
		}
	}
	if o.legacy && o.key == "" {
		return usagef("--legacy-signature goes with --sign-key")
	}
	var key *signing.PrivateKey
	if o.key != "" {
		// Before anything is pushed: a wrong password must not leave an unsigned artifact.
		if key, err = o.loadKey(cmd); err != nil {
			return err
		}
	}
	files, err := oci.LoadFiles(o.files, o.maxFileSize)
	if err != nil {
		return err
	}
	ctx, cancel := o.context(cmd)
	defer cancel()
	res, err := oci.Push(ctx, ref, files, opts)
	if err != nil {
		return err
	}
	var signed *signing.Signed
	if key != nil {
		repo, err := oci.NewRepository(ref, o.transport)
		if err != nil {
			return err
		}
		if signed, err = signing.Sign(ctx, repo, res.Manifest, key, signing.SignOptions{Legacy: o.legacy}); err != nil {
			return fmt.Errorf("pushed %s but could not sign it: %w", res.Reference, err)
		}
	}
	out := cmd.OutOrStdout()
	if o.format == "json" {
		type layer struct {
			File   string `json:"file"`
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
		}
		result := struct {
			Reference string          `json:"reference"`
			Digest    string          `json:"digest"`
			MediaType string          `json:"mediaType"`
			Size      int64           `json:"size"`
			Uploaded  int             `json:"uploaded"`
			Files     []layer         `json:"files"`
			Signature *signing.Signed `json:"signature,omitempty"`
		}{res.Reference.String(), res.Manifest.Digest.String(), res.Manifest.MediaType, res.Manifest.Size, res.Uploaded, nil, signed}
		for _, l := range res.Layers {
			result.Files = append(result.Files, layer{l.Annotations[oci.AnnotationTitle], l.Digest.String(), l.Size})
		}
		return writeJSON(out, result)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Pushed %d policy files (%d new blobs) to %s\n", len(res.Layers), res.Uploaded, ref)
	if signed != nil {
		if err := writeSigned(cmd, "text", res.Reference, signed); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintln(out, res.Reference)
	return err
}

// --- pull ---

type ociPullFlags struct {
	registryFlags
	trustFlags
	output       string
	skipValidate bool
	fetch        oci.FetchOptions
}

func newOCIPullCommand() *cobra.Command {
	o := ociPullFlags{output: ".", fetch: oci.FetchOptions{MaxLayerSize: oci.DefaultMaxLayerSize, MaxTotalSize: oci.DefaultMaxTotalSize}}
	cmd := &cobra.Command{
		Use:   "pull -i REF [-o DIR]",
		Short: "Pull a policy artifact into a directory, verified and validated",
		Long: `Pull the policy files of an artifact into DIR (default: the current directory, created when
missing). Every layer's digest and size is checked, file names must be plain names, and
the policies are validated strictly; then the files are moved into DIR together, so a
failed pull leaves DIR as it was. Files of the same name are replaced, others left alone.
Files DIR already holds with the same content are not downloaded again.`,
		Example: `  karmor oci pull -i localhost:5000/myimage:latest -o policies/
  karmor oci pull -i ghcr.io/team/policies@sha256:... --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runOCIPull(cmd, &o) },
	}
	f := cmd.Flags()
	o.registryFlags.add(f)
	f.StringVarP(&o.output, "output", "o", o.output, "directory to write the policy files into")
	f.BoolVar(&o.skipValidate, "skip-validate", false, "write the files without validating them")
	f.Var(sizeFlag{&o.fetch.MaxLayerSize}, "max-layer-size", "largest policy layer accepted")
	f.Var(sizeFlag{&o.fetch.MaxTotalSize}, "max-total-size", "largest total of all policy layers accepted")
	o.trustFlags.add(f, "verify-key")
	return cmd
}

func runOCIPull(cmd *cobra.Command, o *ociPullFlags) error {
	ref, err := o.parse(cmd)
	if err != nil {
		return err
	}
	if o.output == "" {
		return usagef("-o/--output must name a directory")
	}
	trust, err := o.trust()
	if err != nil {
		return err
	}
	ctx, cancel := o.context(cmd)
	defer cancel()
	o.fetch.Concurrency = o.transport.Concurrency
	opts := oci.PullOptions{Transport: o.transport, Fetch: o.fetch, SkipValidate: o.skipValidate}
	var verified *signing.Verification
	if trust != nil {
		opts.Verify = verifier(trust, func(v *signing.Verification) { verified = v })
	}
	res, err := oci.Pull(ctx, ref, o.output, opts)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if o.format == "json" {
		type file struct {
			File      string `json:"file"`
			Path      string `json:"path"`
			Digest    string `json:"digest"`
			Size      int64  `json:"size"`
			Unchanged bool   `json:"unchanged"`
		}
		result := struct {
			Reference string `json:"reference"`
			Digest    string `json:"digest"`
			Directory string `json:"directory"`
			Files     []file `json:"files"`
			SignedBy  string `json:"signedBy,omitempty"`
		}{Reference: res.Reference.String(), Digest: res.Manifest.Digest.String(), Directory: o.output}
		if verified != nil {
			result.SignedBy = verified.SignedBy
		}
		for _, f := range res.Files {
			result.Files = append(result.Files, file{f.Name, f.Path, f.Digest.String(), f.Size, f.Unchanged})
		}
		return writeJSON(out, result)
	}
	unchanged := 0
	for _, f := range res.Files {
		if f.Unchanged {
			unchanged++
			fmt.Fprintf(out, "%s (unchanged)\n", f.Path)
		} else {
			fmt.Fprintln(out, f.Path)
		}
	}
	if verified != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "Verified %s: %s signature by %s\n", res.Reference, verified.Format, verified.SignedBy)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Pulled %s: %d policy files, %d written, %d unchanged\n",
		res.Reference, len(res.Files), len(res.Files)-unchanged, unchanged)
	return nil
}

// --- inspect ---

type ociInspectFlags struct {
	registryFlags
	fetch oci.FetchOptions
}

func newOCIInspectCommand() *cobra.Command {
	o := ociInspectFlags{fetch: oci.FetchOptions{MaxLayerSize: oci.DefaultMaxLayerSize, MaxTotalSize: oci.DefaultMaxTotalSize}}
	cmd := &cobra.Command{
		Use:   "inspect -i REF [--format json]",
		Short: "Describe a policy artifact without writing any file",
		Long: `Show an artifact's digest, creation time and annotations, and for each policy file its
name, size, digest and the kind and name of each policy in it. The layers are fetched
and verified as pull does, but nothing is written.`,
		Example: `  karmor oci inspect -i localhost:5000/myimage:latest
  karmor oci inspect -i ghcr.io/team/policies:v1 --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runOCIInspect(cmd, &o) },
	}
	f := cmd.Flags()
	o.registryFlags.add(f)
	f.Var(sizeFlag{&o.fetch.MaxLayerSize}, "max-layer-size", "largest policy layer accepted")
	f.Var(sizeFlag{&o.fetch.MaxTotalSize}, "max-total-size", "largest total of all policy layers accepted")
	return cmd
}

func runOCIInspect(cmd *cobra.Command, o *ociInspectFlags) error {
	ref, err := o.parse(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := o.context(cmd)
	defer cancel()
	o.fetch.Concurrency = o.transport.Concurrency
	in, err := oci.Inspect(ctx, ref, oci.InspectOptions{Transport: o.transport, Fetch: o.fetch})
	if err != nil {
		return err
	}
	if o.format == "json" {
		return writeJSON(cmd.OutOrStdout(), in)
	}
	return writeInspection(cmd.OutOrStdout(), in)
}

func writeInspection(out io.Writer, in *oci.Inspection) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Reference: %s\nDigest:    %s\n", in.Reference, in.Digest)
	if in.Created != nil {
		fmt.Fprintf(&b, "Created:   %s\n", in.Created.UTC().Format(time.RFC3339))
	}
	if in.ArtifactType != "" {
		fmt.Fprintf(&b, "Type:      %s\n", in.ArtifactType)
	}
	keys := make([]string, 0, len(in.Annotations))
	for k := range in.Annotations {
		if k != oci.AnnotationCreated {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		b.WriteString("Annotations:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s: %s\n", k, in.Annotations[k])
		}
	}
	if in.OtherLayers > 0 {
		fmt.Fprintf(&b, "Other layers (ignored): %d\n", in.OtherLayers)
	}
	fmt.Fprintf(&b, "Policies:  %d files\n\n", len(in.Policies))
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tKIND\tNAME\tSIZE\tDIGEST")
	for _, p := range in.Policies {
		if len(p.Documents) == 0 {
			fmt.Fprintf(tw, "%s\t(no policy)\t\t%d\t%s\n", p.File, p.Size, p.Digest)
		}
		for i, d := range p.Documents {
			name := d.Name
			if d.Namespace != "" {
				name = d.Namespace + "/" + d.Name
			}
			if len(d.Errors) > 0 {
				name += fmt.Sprintf(" (INVALID: %d errors)", len(d.Errors))
			}
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.File, d.Kind, name, p.Size, p.Digest)
			} else {
				fmt.Fprintf(tw, "\t%s\t%s\t\t\n", d.Kind, name)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(out, b.String())
	return err
}
