// Package nri is karmor-nri: a small NRI plugin that makes containerd (and CRI-O) run karmor-hook
// for every container and hands the hook what the OCI config lacks under containerd, the pod's
// labels.
//
// On CreateContainer it answers with an adjustment that adds karmor-hook at createRuntime and
// poststop, adds annotations with the container's id and the pod's labels (as JSON), name,
// namespace and uid, and removes the other runtime's identity keys a pod passed through. It fails
// open: whatever goes wrong, it answers with no adjustment and logs, because the runtime fails
// the container's creation on a plugin error. Its answer takes microseconds, far inside NRI's 2 s
// request timeout. Only this plugin touches the NRI socket; karmord never does.
package nri

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/internal/containerinfo"
	"github.com/karmor/karmor/internal/install"
)

// Annotations the plugin adds to each container. karmor-hook reads them through
// internal/containerinfo, which owns them and believes them only when AnnotationContainerID
// holds the container's own id (see docs/identity.md).
const (
	AnnotationContainerID  = containerinfo.AnnotationContainerID
	AnnotationPodLabels    = containerinfo.AnnotationPodLabels
	AnnotationPodName      = containerinfo.AnnotationPodName
	AnnotationPodNamespace = containerinfo.AnnotationPodNamespace
	AnnotationPodUID       = containerinfo.AnnotationPodUID
)

// MaxLabelsJSON bounds the pod-labels annotation: containerinfo ignores a larger value, so the
// plugin keeps whole labels, in key order, while they fit.
const MaxLabelsJSON = containerinfo.MaxValueBytes

// Plugin handles NRI's CreateContainer. Its zero value is not usable; use NewPlugin.
type Plugin struct {
	// config is the plugin's configuration; Configure may replace it with the runtime-supplied
	// plugin configuration while requests are being served.
	config atomic.Pointer[Config]
	logger *slog.Logger
	logs   *LogWriter
	// Counters for logs and tests: containers adjusted, and requests answered without an
	// adjustment because something failed.
	adjusted, failedOpen atomic.Uint64
}

// NewPlugin returns a plugin that adds karmor-hook, run as config.Hook describes (the same
// arguments and timeout as karmor's hooks.d files), to every container. logger (slog.Default
// when nil) should write to logs, when given, so that a plugin_log_file in the runtime's plugin
// configuration can redirect it.
func NewPlugin(config Config, logger *slog.Logger, logs *LogWriter) *Plugin {
	if logger == nil {
		logger = slog.Default()
	}
	p := &Plugin{logger: logger, logs: logs}
	p.config.Store(&config)
	return p
}

// Config returns the configuration the plugin currently applies.
func (p *Plugin) Config() Config { return *p.config.Load() }

// Stats returns how many containers were adjusted and how many requests failed open.
func (p *Plugin) Stats() (adjusted, failedOpen uint64) {
	return p.adjusted.Load(), p.failedOpen.Load()
}

// Configure applies the plugin configuration the runtime passes (the file
// <plugin_config_path>/10-karmor.conf for a plugin the runtime starts itself; see ParseConfig)
// and subscribes to CreateContainer only, so the runtime sends the plugin nothing else.
// A configuration that does not parse is refused: the runtime then runs without the plugin and
// says why, rather than the plugin reporting to the wrong place.
func (p *Plugin) Configure(_ context.Context, config, runtime, version string) (stub.EventMask, error) {
	if strings.TrimSpace(config) != "" {
		c, err := ParseConfig([]byte(config), p.Config())
		if err != nil {
			p.logger.Error("karmor-nri: the runtime's plugin configuration is invalid; not registering", "err", err)
			return 0, err
		}
		if c.PluginLogFile != "" && p.logs != nil {
			if err := p.logs.OpenFile(c.PluginLogFile); err != nil {
				p.logger.Error("karmor-nri: cannot open plugin_log_file; logging to stderr", "err", err)
			}
		}
		p.config.Store(&c)
	}
	h := p.Config().Hook
	p.logger.Info("karmor-nri configured by the runtime", "runtime", runtime, "version", version,
		"hook", h.Path, "socket", h.Socket, "spool_dir", h.SpoolDir)
	return api.MustParseEventMask("CreateContainer"), nil
}

// CreateContainer answers with the hooks and pod annotations. It never returns an error: the
// runtime would fail the container's creation.
func (p *Plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (adj *api.ContainerAdjustment, _ []*api.ContainerUpdate, _ error) {
	defer func() {
		if r := recover(); r != nil {
			p.failedOpen.Add(1)
			p.logger.Error("karmor-nri: panic while adjusting a container; it starts without karmor's hooks", "container", ctr.GetId(), "panic", r)
			adj = nil
		}
	}()
	adj, err := Adjust(p.Config().Hook, pod, ctr)
	if err != nil {
		p.failedOpen.Add(1)
		p.logger.Error("karmor-nri: cannot adjust a container; it starts without karmor's hooks", "container", ctr.GetId(), "pod", pod.GetName(), "err", err)
		return nil, nil, nil
	}
	p.adjusted.Add(1)
	p.logger.Debug("karmor-nri: container adjusted", "container", ctr.GetId(), "pod", pod.GetName(), "namespace", pod.GetNamespace())
	return adj, nil, nil
}

// Adjust builds the adjustment for one container: the hooks (unless the container already runs
// karmor-hook, as under CRI-O with karmor's hooks.d file) and the pod annotations. Labels are
// kept as the pod has them, containerd's own (io.cri-containerd.kind, ...) included.
func Adjust(hook install.HookConfig, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, error) {
	if pod == nil || ctr == nil {
		return nil, fmt.Errorf("request without a pod or container")
	}
	if err := hook.Check(); err != nil {
		return nil, err
	}
	adj := &api.ContainerAdjustment{}
	if !hasHook(ctr.GetHooks(), hook.Path) {
		adj.AddHooks(&api.Hooks{
			CreateRuntime: []*api.Hook{toAPIHook(hook.OCIHook("createRuntime"))},
			Poststop:      []*api.Hook{toAPIHook(hook.OCIHook("poststop"))},
		})
	}
	labels, err := labelsJSON(pod.GetLabels(), MaxLabelsJSON)
	if err != nil {
		return nil, err
	}
	// Set even when the container asked for these keys itself: the pod's identity comes from
	// the runtime, not from what a workload claims.
	adj.AddAnnotation(AnnotationPodLabels, labels)
	adj.AddAnnotation(AnnotationPodName, pod.GetName())
	adj.AddAnnotation(AnnotationPodNamespace, pod.GetNamespace())
	adj.AddAnnotation(AnnotationPodUID, pod.GetUid())
	adj.AddAnnotation(AnnotationContainerID, ctr.GetId())
	for _, key := range foreignIdentityKeys(ctr.GetId(), ctr.GetAnnotations()) {
		adj.RemoveAnnotation(key)
	}
	return adj, nil
}

// foreignIdentityKeys returns, sorted, the identity keys in a container's annotations that the
// runtime running it never writes, so they can only be a pod's: CRI-O's and kubelet's keys under
// containerd, containerd's under CRI-O. containerinfo already ignores them; removing them keeps
// every other reader of the spec from being fooled too. CRI-O is told by its own record of the
// container's id, which no pod can know in advance; NRI runs only in CRI-O and containerd, so
// anything else is containerd.
func foreignIdentityKeys(id string, ann map[string]string) []string {
	crio := ann[containerinfo.AnnotationManager] == containerinfo.ManagerCRIO && id != "" &&
		ann[containerinfo.AnnotationCRIOContainerID] == id
	var keys []string
	for k := range ann {
		var foreign bool
		if crio {
			foreign = strings.HasPrefix(k, containerinfo.AnnotationCRIPrefix)
		} else {
			switch k {
			case containerinfo.AnnotationCRIOPodName, containerinfo.AnnotationCRIOPodNamespace, containerinfo.AnnotationCRIOPodUID,
				containerinfo.AnnotationCRIOContainerName, containerinfo.AnnotationManager:
				foreign = true
			default:
				foreign = strings.HasPrefix(k, containerinfo.AnnotationCRIOPrefix)
			}
		}
		if foreign {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func toAPIHook(h rspec.Hook) *api.Hook {
	out := &api.Hook{Path: h.Path, Args: h.Args, Env: h.Env}
	if h.Timeout != nil {
		out.Timeout = api.Int(*h.Timeout)
	}
	return out
}

// hasHook reports whether the container already runs karmor-hook at createRuntime or prestart:
// the configured path, or a binary named karmor-hook elsewhere (as install recognises its own).
func hasHook(h *api.Hooks, path string) bool {
	if h == nil {
		return false
	}
	for _, list := range [][]*api.Hook{h.CreateRuntime, h.Prestart} {
		for _, x := range list {
			if x.GetPath() == path || filepath.Base(x.GetPath()) == install.HookProgram {
				return true
			}
		}
	}
	return false
}

// labelsJSON encodes labels as a JSON object of at most limit bytes, keeping whole labels in key
// order and dropping those that do not fit.
func labelsJSON(labels map[string]string, limit int) (string, error) {
	keep := map[string]string{}
	size := 2 // {}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		kb, err := json.Marshal(k)
		if err != nil {
			return "", err
		}
		vb, err := json.Marshal(labels[k])
		if err != nil {
			return "", err
		}
		n := len(kb) + 1 + len(vb) // "k":"v"
		if len(keep) > 0 {
			n++ // ,
		}
		if size+n > limit {
			continue
		}
		keep[k] = labels[k]
		size += n
	}
	b, err := json.Marshal(keep)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
