package agent

import (
	"encoding/json"
	"sort"

	"github.com/karmor/karmor/internal/containerinfo"
	"github.com/karmor/karmor/pkg/agentapi"
)

// Containers leave karmord in two forms. A get answer carries a container whole. List answers
// and watched events carry it slim: annotations only up to agentapi.SlimAnnotationValueBytes
// each and agentapi.SlimAnnotationBytes in all, with Container.AnnotationsOmitted counting the
// rest. A pod's annotations can reach hundreds of KiB; carried whole, a list of a few dozen such
// containers outgrows a frame, and the event ring would pin every stopped container's.

// ownAnnotations are the annotations karmord itself reads when it answers (fillPodmanLabels),
// kept in the slim form before any other, so that a watched event is matched as a listed one.
var ownAnnotations = []string{containerinfo.AnnotationManager}

// slimContainer returns c with its annotations cut to the slim bounds: karmord's own first, then
// the smallest first (ties in key order), so that as many as possible are kept. c's maps are not
// modified; the result shares them when nothing is cut.
func slimContainer(c agentapi.Container) agentapi.Container {
	if fitsSlim(c.Annotations) {
		return c
	}
	keys := make([]string, 0, len(c.Annotations))
	for k := range c.Annotations {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		for i, own := range ownAnnotations {
			if k == own {
				return i - len(ownAnnotations)
			}
		}
		return len(k) + len(c.Annotations[k])
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, rj := rank(keys[i]), rank(keys[j])
		if ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	kept := map[string]string{}
	used, omitted := 0, 0
	for _, k := range keys {
		v := c.Annotations[k]
		if len(v) > agentapi.SlimAnnotationValueBytes || used+len(k)+len(v) > agentapi.SlimAnnotationBytes {
			omitted++
			continue
		}
		kept[k] = v
		used += len(k) + len(v)
	}
	if len(kept) == 0 {
		kept = nil
	}
	c.Annotations = kept
	c.AnnotationsOmitted = omitted
	return c
}

func fitsSlim(annotations map[string]string) bool {
	total := 0
	for k, v := range annotations {
		if len(v) > agentapi.SlimAnnotationValueBytes {
			return false
		}
		total += len(k) + len(v)
	}
	return total <= agentapi.SlimAnnotationBytes
}

// Estimated overheads, in bytes, of the structures an envelope in the stream holds beyond its
// strings: the envelope, event and container structs, and one map entry.
const (
	envelopeOverhead = 256
	eventOverhead    = 512
	mapEntryOverhead = 48
)

// envelopeSize estimates the memory an envelope in the stream holds: its strings and map
// entries plus fixed overheads. It is the ring's budget unit, cheap enough to compute under the
// table's lock on every event; it does not need to be exact, only to grow with what the
// envelope holds.
func envelopeSize(env *agentapi.Envelope) int {
	n := envelopeOverhead + len(env.Error)
	if ev := env.Event; ev != nil {
		c := &ev.Container
		n += eventOverhead + len(ev.Kind) + len(ev.Stage) + len(ev.Source)
		for _, s := range []string{c.ID, c.Name, c.CgroupPath, c.Bundle, c.Image, c.AppArmor, c.Pod, c.Namespace, c.PodUID, c.ContainerName, c.Source, c.KubeArmor} {
			n += len(s)
		}
		n += stringMapSize(c.Labels) + stringMapSize(c.Annotations) + len(c.Namespaces)*mapEntryOverhead
		for _, p := range c.Policies {
			n += mapEntryOverhead + len(p)
		}
	}
	if pc := env.PolicyChange; pc != nil {
		n += eventOverhead + len(pc.Source) + len(pc.Kind) + len(pc.Location) + len(pc.Digest) + len(pc.Error)
	}
	return n
}

func stringMapSize(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += mapEntryOverhead + len(k) + len(v)
	}
	return n
}

// listChunkBytes is the JSON size at which a chunked list answer starts a new frame: well
// within agentapi.MaxFrame, so that one container (at most a hook's frame, slimmed) always fits.
const listChunkBytes = 1 << 20

// chunkContainers splits list into consecutive runs of at most listChunkBytes of JSON (a
// container larger than that alone makes a run) and returns the runs and the whole list's size.
// There is always at least one run, possibly empty.
func chunkContainers(list []agentapi.Container) ([][]agentapi.Container, int, error) {
	chunks := [][]agentapi.Container{nil}
	start, size, total := 0, 0, 0
	for i := range list {
		b, err := json.Marshal(&list[i])
		if err != nil {
			return nil, 0, err
		}
		n := len(b) + 1 // the comma
		if i > start && size+n > listChunkBytes {
			chunks[len(chunks)-1] = list[start:i]
			chunks = append(chunks, nil)
			start, size = i, 0
		}
		size += n
		total += n
	}
	chunks[len(chunks)-1] = list[start:]
	return chunks, total, nil
}
