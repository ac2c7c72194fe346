package testutil

import (
	"fmt"
	"strings"
)

// BlockShellPolicy is a valid KubeArmorPolicy named name, in namespace ns ("" for the default
// namespace), that selects app=<app> and blocks /bin/sh: the policy most tests push, watch or
// match.
func BlockShellPolicy(name, ns, app string) string {
	namespace := ""
	if ns != "" {
		namespace = "\n  namespace: " + ns
	}
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: %s%s
spec:
  selector:
    matchLabels:
      app: %s
  process:
    matchPaths:
    - path: /bin/sh
  action: Block
`, name, namespace, app)
}

// InvalidPolicy is BlockShellPolicy("broken", "", "web") with its action misspelt "actionn": an
// unknown field, which strict validation refuses and only --skip-validate pushes.
func InvalidPolicy() string {
	return strings.Replace(BlockShellPolicy("broken", "", "web"), "  action:", "  actionn:", 1)
}
