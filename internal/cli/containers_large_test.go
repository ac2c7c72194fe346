package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// largeAnnotationStart is a container start with ~240 KiB of annotations (15 values of 16 KiB,
// the most karmor-hook keeps per value) and one small annotation.
func largeAnnotationStart(i int) *agentapi.Event {
	ann := map[string]string{"io.kubernetes.cri.container-type": "container"}
	for j := range 15 {
		ann[fmt.Sprintf("example.com/blob-%02d", j)] = strings.Repeat(string(rune('a'+j)), 16<<10)
	}
	return &agentapi.Event{Kind: agentapi.KindStart, Stage: "createRuntime", Time: time.Now(),
		Container: agentapi.Container{ID: fmt.Sprintf("big%02d-0123456789abcdef", i), Name: fmt.Sprintf("big%02d", i), PID: 5000 + i,
			Labels: map[string]string{"app": "big"}, Annotations: ann}}
}

// TestContainersLargeAnnotations: twenty containers with ~240 KiB of annotations each (more than
// one frame of the protocol in all) are listed and watched (issue 12 item 2).
func TestContainersLargeAnnotations(t *testing.T) {
	const n = 20
	sock, stop := startContainersAgent(t)
	for i := range n {
		reportToAgent(t, sock, largeAnnotationStart(i))
	}

	code, out, errOut := containersCLI("containers", "--socket", sock)
	if code != ExitOK {
		t.Fatalf("karmor containers: exit %d: %s", code, errOut)
	}
	if rows := strings.Count(out, "\n"); rows != n+1 {
		t.Fatalf("karmor containers printed %d lines, want a header and %d rows:\n%s", rows, n, out)
	}

	code, out, errOut = containersCLI("containers", "--socket", sock, "-o", "json")
	if code != ExitOK {
		t.Fatalf("karmor containers -o json: exit %d: %s", code, errOut)
	}
	var listed []map[string]any
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != n {
		t.Fatalf("karmor containers -o json: %d containers, %v", len(listed), err)
	}

	var watched, watchErr testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run([]string{"containers", "-w", "--socket", sock}, strings.NewReader(""), &watched, &watchErr)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(watched.String(), "listed") < n && time.Now().Before(deadline) {
		select {
		case code := <-done:
			t.Fatalf("karmor containers -w ended with exit %d: %s", code, watchErr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	reportToAgent(t, sock, largeAnnotationStart(n))
	for !strings.Contains(watched.String(), fmt.Sprintf("big%02d", n)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	lines := strings.Split(strings.TrimSpace(watched.String()), "\n")
	if len(lines) != n+1 || !strings.Contains(lines[n], "start") || !strings.Contains(lines[n], fmt.Sprintf("big%02d", n)) {
		t.Fatalf("karmor containers -w printed:\n%s\n%s", watched.String(), watchErr.String())
	}
}

// TestContainersAnnotationsWholeOnRequest: a listing cuts annotations to the slim bounds and
// counts what it left out; --annotations and a single container's answer carry them whole.
func TestContainersAnnotationsWholeOnRequest(t *testing.T) {
	sock, _ := startContainersAgent(t)
	reportToAgent(t, sock, largeAnnotationStart(1))
	reportToAgent(t, sock, webContainerStart())

	type listed struct {
		ID                 string            `json:"id"`
		Annotations        map[string]string `json:"annotations"`
		AnnotationsOmitted int               `json:"annotations_omitted"`
	}
	decode := func(args ...string) []listed {
		t.Helper()
		code, out, errOut := containersCLI(append([]string{"containers", "--socket", sock, "-o", "json"}, args...)...)
		if code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		if !strings.HasPrefix(out, "[") {
			out = "[" + out + "]"
		}
		var got []listed
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return got
	}
	slim := decode()
	if len(slim) != 2 || slim[1].ID != "big01-0123456789abcdef" {
		t.Fatalf("listing: %+v", slim)
	}
	if big := slim[1]; big.AnnotationsOmitted != 15 || len(big.Annotations) != 1 || big.Annotations["io.kubernetes.cri.container-type"] != "container" {
		t.Fatalf("listed big container: %d annotations, %d omitted, want the small one and 15 omitted", len(big.Annotations), big.AnnotationsOmitted)
	}
	for _, whole := range [][]listed{decode("--annotations"), decode("big01")} {
		big := whole[len(whole)-1]
		if big.ID != "big01-0123456789abcdef" || big.AnnotationsOmitted != 0 || len(big.Annotations) != 16 || len(big.Annotations["example.com/blob-03"]) != 16<<10 {
			t.Fatalf("whole annotations: %s has %d annotations, %d omitted", big.ID, len(big.Annotations), big.AnnotationsOmitted)
		}
	}
	for _, args := range [][]string{{"--annotations"}, {"-w", "-o", "json", "--annotations"}} {
		if code, _, errOut := containersCLI(append([]string{"containers", "--socket", sock}, args...)...); code != ExitUsage || !strings.Contains(errOut, "--annotations") {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
}
