// Command kalisten stands in for KubeArmor's ka.sock in bench/kubearmor: it answers karmord's
// feed as KubeArmor does (internal/kubearmor/kasocktest) at no cost of its own, so that the
// benchmark can tell karmord's cost from KubeArmor's. It runs until SIGTERM or SIGINT and then
// prints how many messages it answered.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/karmor/karmor/internal/kubearmor/kasocktest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kalisten SOCKET")
		os.Exit(2)
	}
	k, err := kasocktest.Listen(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "kalisten:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	k.Close()
	fmt.Printf("kalisten: answered %d ok, %d err\n", k.Answered("ok"), k.Answered("err"))
}
