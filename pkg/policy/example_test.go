package policy_test

import (
	"fmt"

	"github.com/karmor/karmor/pkg/policy"
)

func ExampleParseBytes() {
	data := []byte(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: block-shells
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
  process:
    matchPaths:
      - path: /bin/sh
  file:
    matchDirectories:
      - dir: /etc/
        recurive: true
  action: Block
`)
	docs := policy.ParseBytes("block-shells.yaml", data, policy.Options{})
	for _, d := range docs {
		fmt.Println(d.Kind, d.Name, d.Valid())
		for _, e := range d.Errors {
			fmt.Println(e)
		}
	}
	fmt.Println(policy.FirstError(docs))

	docs = policy.ParseBytes("block-shells.yaml", data, policy.Options{Lenient: true})
	fmt.Println(docs[0].Valid(), docs[0].Warnings[0].Path, docs[0].Policy.Spec.Process.MatchPaths[0].Path)
	// Output:
	// KubeArmorPolicy block-shells false
	// 16:9 spec.file.matchDirectories[0].recurive: unknown field "recurive"; did you mean "recursive"?
	// 1 policy document is invalid:
	//   block-shells.yaml:0 16:9 spec.file.matchDirectories[0].recurive: unknown field "recurive"; did you mean "recursive"?
	// true spec.file.matchDirectories[0].recurive /bin/sh
}
