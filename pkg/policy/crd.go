package policy

import (
	"regexp"
	"sort"

	"go.yaml.in/yaml/v3"
)

// This file encodes the openAPIV3Schema of the four KubeArmor CRDs (kubearmor/KubeArmor
// deployments/CRD/*.yaml): the same fields, types, enums, patterns, bounds and required lists,
// no more and no less, so that a document we accept is one the API server accepts.
// testdata/crd/*.schema hold a flattened copy of the upstream schemas; TestSchemasMatchCRDs
// compares them with what is built here.

func object(props map[string]*schema, required ...string) *schema {
	s := &schema{typ: typeObject, props: props, required: required}
	for name := range props {
		s.propNames = append(s.propNames, name)
	}
	sort.Strings(s.propNames)
	return s
}

// stringMap is an object whose keys are free and whose values are strings (matchLabels).
func stringMap() *schema { return &schema{typ: typeObject, values: str()} }

func arrayOf(items *schema) *schema { return &schema{typ: typeArray, items: items} }

func str() *schema { return &schema{typ: typeString} }

func boolean() *schema { return &schema{typ: typeBoolean} }

func enum(values ...string) *schema { return &schema{typ: typeString, enum: values} }

// patterned is a string that must match re (a Go regexp, as the API server uses); hint says
// in words what the pattern asks for.
func patterned(re, hint string, maxLength int) *schema {
	return &schema{typ: typeString, pattern: regexp.MustCompile(re), hint: hint, maxLength: maxLength}
}

func integer() *schema { return &schema{typ: typeInteger} }

func integerRange(lo, hi int64) *schema { return &schema{typ: typeInteger, min: &lo, max: &hi} }

// with returns a copy of props with more fields added; the schemas share their leaves.
func with(props map[string]*schema, more map[string]*schema) map[string]*schema {
	out := make(map[string]*schema, len(props)+len(more))
	for k, v := range props {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// without returns a copy of props without some fields.
func without(props map[string]*schema, names ...string) map[string]*schema {
	out := with(props, nil)
	for _, n := range names {
		delete(out, n)
	}
	return out
}

var (
	actionSchema   = enum(string(ActionAllow), string(ActionAudit), string(ActionBlock))
	severitySchema = integerRange(1, 10)
	tagsSchema     = arrayOf(str())
	messageSchema  = str()

	// filePath is an absolute path to a file: it starts with / and does not end with /.
	filePath = patterned(`^\/+.*[^\/]$`, "an absolute file path (starting with /, not ending with /)", 200)
	// dirPath is an absolute directory: / or a path that starts and ends with /.
	dirPath = patterned(`^\/$|^\/.*\/$`, "an absolute directory path (starting and ending with /)", 0)

	fromSourcePath = arrayOf(object(map[string]*schema{"path": filePath}))

	// capabilityName is unanchored at the start in the CRD, so "cap_net_raw" passes too.
	capabilityName = patterned(`(chown|dac_override|dac_read_search|fowner|fsetid|kill|setgid|setuid|setpcap|linux_immutable|net_bind_service|net_broadcast|net_admin|net_raw|ipc_lock|ipc_owner|sys_module|sys_rawio|sys_chroot|sys_ptrace|sys_pacct|sys_admin|sys_boot|sys_nice|sys_resource|sys_time|sys_tty_config|mknod|lease|audit_write|audit_control|setfcap|mac_override|mac_admin)$`,
		"a capability name without CAP_, in lower case (net_raw, sys_admin, ...)", 0)
	protocolName = patterned(`(tcp|TCP|udp|UDP|raw|RAW|icmp|ICMP|icmpv6|ICMPV6|sctp|SCTP|stream|STREAM|dgram|DGRAM|rdm|RDM|seqpacket|SEQPACKET|dccp|DCCP|packet|PACKET|all|ALL)$`,
		"a protocol (tcp, udp, icmp, icmpv6, raw, sctp, stream, dgram, rdm, seqpacket, dccp, packet or all, in lower or upper case)", 0)
	execName = patterned(`^[^\/]+$`, "a program name without any /", 0)
)

// ruleMeta are the fields every rule block and rule carries.
var ruleMeta = map[string]*schema{
	"severity": severitySchema,
	"tags":     tagsSchema,
	"message":  messageSchema,
	"action":   actionSchema,
}

func metaWith(more map[string]*schema) map[string]*schema { return with(ruleMeta, more) }

// The rule blocks, as a KubeArmorPolicy has them; the other kinds derive theirs from these.
var (
	processRules = object(metaWith(map[string]*schema{
		"matchPaths": arrayOf(object(metaWith(map[string]*schema{
			"path":        filePath,
			"execname":    execName,
			"allowedArgs": {typ: typeArray, items: str(), maxItems: 20},
			"ownerOnly":   boolean(),
			"pts":         boolean(),
			"fromSource":  fromSourcePath,
		}))),
		"matchDirectories": arrayOf(object(metaWith(map[string]*schema{
			"dir":        dirPath,
			"recursive":  boolean(),
			"ownerOnly":  boolean(),
			"pts":        boolean(),
			"fromSource": fromSourcePath,
		}), "dir")),
		"matchPatterns": arrayOf(object(metaWith(map[string]*schema{
			"pattern":   str(),
			"ownerOnly": boolean(),
		}), "pattern")),
	}))

	fileRules = object(metaWith(map[string]*schema{
		"matchPaths": arrayOf(object(metaWith(map[string]*schema{
			"path":       filePath,
			"readOnly":   boolean(),
			"ownerOnly":  boolean(),
			"pts":        boolean(),
			"fromSource": fromSourcePath,
		}), "path")),
		"matchDirectories": arrayOf(object(metaWith(map[string]*schema{
			"dir":        dirPath,
			"recursive":  boolean(),
			"readOnly":   boolean(),
			"ownerOnly":  boolean(),
			"pts":        boolean(),
			"fromSource": fromSourcePath,
		}), "dir")),
		"matchPatterns": arrayOf(object(metaWith(map[string]*schema{
			"pattern":   str(),
			"readOnly":  boolean(),
			"ownerOnly": boolean(),
		}), "pattern")),
	}))

	protocolRuleProps = metaWith(map[string]*schema{
		"protocol":   protocolName,
		"pts":        boolean(),
		"fromSource": fromSourcePath,
	})
	dnsRules = arrayOf(object(metaWith(map[string]*schema{
		"domain":     str(),
		"fromSource": fromSourcePath,
	}), "domain"))
	networkRules = object(metaWith(map[string]*schema{
		"matchProtocols":  arrayOf(object(protocolRuleProps, "protocol")),
		"matchDNSQueries": dnsRules,
	}))

	capabilityRuleProps = metaWith(map[string]*schema{
		"capability": capabilityName,
		"fromSource": fromSourcePath,
	})
	capabilityRules = object(metaWith(map[string]*schema{
		"matchCapabilities": arrayOf(object(capabilityRuleProps, "capability")),
	}))

	syscallSource = arrayOf(object(map[string]*schema{
		"path":      filePath,
		"dir":       str(),
		"recursive": boolean(),
	}))
	syscallList  = arrayOf(enum(syscallNames...))
	syscallRules = object(map[string]*schema{
		"matchSyscalls": arrayOf(object(map[string]*schema{
			"syscall":    syscallList,
			"fromSource": syscallSource,
		})),
		"matchPaths": arrayOf(object(map[string]*schema{
			"syscall":    syscallList,
			"fromSource": syscallSource,
			// a file or a directory: the union of the two path patterns
			"path":      patterned(`(^\/+.*[^\/]$)|(^\/$|^\/.*\/$)`, "an absolute file or directory path", 0),
			"recursive": boolean(),
		})),
		"severity": severitySchema,
		"tags":     tagsSchema,
		"message":  messageSchema,
	})

	presets = arrayOf(object(map[string]*schema{
		"name":   str(),
		"action": actionSchema,
	}))

	// Host policies may only name sources in capability and protocol rules: fromSource is required there.
	hostNetworkRules = object(metaWith(map[string]*schema{
		"matchProtocols":  arrayOf(object(without(protocolRuleProps, "pts"), "fromSource", "protocol")),
		"matchDNSQueries": dnsRules,
	}))
	hostCapabilityRules = object(metaWith(map[string]*schema{
		"matchCapabilities": arrayOf(object(capabilityRuleProps, "capability", "fromSource")),
	}))
	deviceRules = object(metaWith(map[string]*schema{
		"matchDevice": arrayOf(object(metaWith(map[string]*schema{
			"class":    str(),
			"level":    {typ: typeInteger, min: ptr(int64(1)), int32: true},
			"subClass": {typ: typeInteger, int32: true},
			"protocol": {typ: typeInteger, int32: true},
		}), "class")),
	}))

	matchLabels       = stringMap()
	nodeSelector      = object(map[string]*schema{"matchLabels": matchLabels})
	selectorExprProps = map[string]*schema{
		"key":      enum("label"),
		"operator": enum("In", "NotIn"),
		"values":   arrayOf(str()),
	}
	podSelector = object(map[string]*schema{
		"matchLabels":      matchLabels,
		"matchExpressions": arrayOf(object(selectorExprProps)),
	})
	// A cluster policy selects by namespace or label expressions only.
	clusterSelector = object(map[string]*schema{
		"matchExpressions": arrayOf(object(with(selectorExprProps, map[string]*schema{"key": enum("namespace", "label")}))),
	})
)

func ptr[T any](v T) *T { return &v }

// policySpec is the spec of a KubeArmorPolicy; the other kinds are variations of it.
var policySpec = map[string]*schema{
	"selector":     podSelector,
	"process":      processRules,
	"file":         fileRules,
	"network":      networkRules,
	"capabilities": capabilityRules,
	"syscalls":     syscallRules,
	"presets":      presets,
	"apparmor":     str(),
	"severity":     severitySchema,
	"tags":         tagsSchema,
	"message":      messageSchema,
	"action":       actionSchema,
}

// networkPolicySpec is the spec of a KubeArmorNetworkPolicy.
func networkPolicySpec() *schema {
	peer := func() *schema {
		return arrayOf(object(map[string]*schema{
			"ipBlock": object(map[string]*schema{"cidr": str()}, "cidr"),
		}, "ipBlock"))
	}
	ruleProps := map[string]*schema{
		"ports": arrayOf(object(map[string]*schema{
			"port":     str(),
			"endPort":  {typ: typeInteger, min: ptr(int64(1)), max: ptr(int64(65535)), int32: true},
			"protocol": enum("TCP", "UDP", "SCTP", "tcp", "udp", "sctp"),
		}, "port")),
		"iface":    arrayOf(str()),
		"limit":    patterned(`^[0-9]+(KB|MB|GB|K|M|G)?$`, "a bandwidth such as 10MB (digits, then K, KB, M, MB, G or GB)", 0),
		"duration": str(),
		"severity": integer(),
		"tags":     tagsSchema,
		"message":  messageSchema,
		"action":   actionSchema,
	}
	spec := object(map[string]*schema{
		"selector":     podSelector,
		"nodeSelector": nodeSelector,
		"level":        enum("pod", "policy", "Pod", "Policy"),
		"ingress":      arrayOf(object(with(ruleProps, map[string]*schema{"from": peer()}))),
		"egress":       arrayOf(object(with(ruleProps, map[string]*schema{"to": peer()}))),
		"severity":     severitySchema,
		"tags":         tagsSchema,
		"message":      messageSchema,
		"action":       actionSchema,
	})
	spec.rules = networkPolicyRules
	return spec
}

// networkPolicyRules are the CRD's x-kubernetes-validations on a KubeArmorNetworkPolicy spec.
var networkPolicyRules = []objectRule{
	{
		message: "A policy cannot target both containers and host nodes.",
		broken: func(spec *yaml.Node) bool {
			return selectsContainers(spec) && field(spec, "nodeSelector") != nil
		},
	},
	{
		message: "Container policies strictly support only bandwidth quota rules; all ingress rules must declare both 'limit' and 'duration' only",
		broken:  func(spec *yaml.Node) bool { return selectsContainers(spec) && !allHaveLimits(field(spec, "ingress")) },
	},
	{
		message: "Container policies strictly support only bandwidth quota rules; all egress rules must declare both 'limit' and 'duration' only",
		broken:  func(spec *yaml.Node) bool { return selectsContainers(spec) && !allHaveLimits(field(spec, "egress")) },
	},
}

func selectsContainers(spec *yaml.Node) bool {
	sel := field(spec, "selector")
	return sel != nil && (field(sel, "matchLabels") != nil || field(sel, "matchExpressions") != nil)
}

func allHaveLimits(rules *yaml.Node) bool {
	if rules == nil {
		return true
	}
	for _, r := range rules.Content {
		if field(r, "limit") == nil || field(r, "duration") == nil {
			return false
		}
	}
	return true
}

// field returns the value of key in a cleaned mapping, or nil.
func field(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// objectMeta is Kubernetes' ObjectMeta. The CRDs say only "metadata: type: object"; the API
// server then checks metadata as ObjectMeta, so these are the fields it accepts.
var objectMeta = object(map[string]*schema{
	"name":                       str(),
	"generateName":               str(),
	"namespace":                  str(),
	"selfLink":                   str(),
	"uid":                        str(),
	"resourceVersion":            str(),
	"generation":                 integer(),
	"creationTimestamp":          str(),
	"deletionTimestamp":          str(),
	"deletionGracePeriodSeconds": integer(),
	"labels":                     stringMap(),
	"annotations":                stringMap(),
	"finalizers":                 arrayOf(str()),
	"ownerReferences": arrayOf(object(map[string]*schema{
		"apiVersion":         str(),
		"kind":               str(),
		"name":               str(),
		"uid":                str(),
		"controller":         boolean(),
		"blockOwnerDeletion": boolean(),
	}, "apiVersion", "kind", "name", "uid")),
	"managedFields": arrayOf(object(map[string]*schema{
		"manager":     str(),
		"operation":   str(),
		"apiVersion":  str(),
		"time":        str(),
		"fieldsType":  str(),
		"fieldsV1":    {typ: typeAny},
		"subresource": str(),
	})),
})

// document wraps a spec into a whole object of its kind.
func document(spec *schema) *schema {
	return object(map[string]*schema{
		"apiVersion": str(),
		"kind":       str(),
		"metadata":   objectMeta,
		"spec":       spec,
		"status":     object(map[string]*schema{"status": str()}),
	})
}

// kindSchemas maps each kind to the schema of its documents.
var kindSchemas = map[string]*schema{
	KindPolicy: document(object(policySpec)),
	KindClusterPolicy: document(object(with(policySpec, map[string]*schema{
		"selector": clusterSelector,
	}))),
	KindHostPolicy: document(object(with(without(policySpec, "selector", "presets"), map[string]*schema{
		"nodeSelector": nodeSelector,
		"network":      hostNetworkRules,
		"capabilities": hostCapabilityRules,
		"device":       deviceRules,
	}), "nodeSelector")),
	KindNetworkPolicy: document(networkPolicySpec()),
}
