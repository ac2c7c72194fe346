package testutil

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// A real etcd and kube-apiserver (v1.34.4) for the tests that talk to Kubernetes, run the way
// ../shared/docs/kubernetes.md describes. .ci/install.d/60-kube-apiserver.sh builds them.
const (
	// EnvKubeBinDir overrides where etcd and kube-apiserver are looked for.
	EnvKubeBinDir     = "KARMOR_KUBE_BIN_DIR"
	defaultKubeBinDir = "/var/cache/karmor-kube/bin"
	kubeInstallHint   = ".ci/install.d/60-kube-apiserver.sh (builds them from the Go module proxy, ~4 min)"

	// kubeReadyTimeout bounds the wait for /readyz: ready takes 2–3 s here, so a minute means
	// something is wrong, and the error then carries the server's log.
	kubeReadyTimeout = 60 * time.Second
	// crdReadyTimeout bounds InstallCRDs when the caller's context has no earlier deadline.
	crdReadyTimeout = 60 * time.Second
	adminUser       = "admin"
)

// KubeUser is an extra, non-admin token user of a KubeAPI (to test RBAC): it has no bindings
// unless the test creates them.
type KubeUser struct {
	Name   string
	Groups []string
}

// KubeAPIOptions configures StartKubeAPI.
type KubeAPIOptions struct {
	Users []KubeUser
}

// KubeAPI is a running etcd + kube-apiserver pair private to one test process.
type KubeAPI struct {
	Host   string // https://127.0.0.1:PORT
	CAFile string // the server's self-signed certificate (with its CA), for clients
	Dir    string // everything of this instance: etcd data, certificates, tokens, logs

	tokens           map[string]string // user name (adminUser too) → bearer token
	etcd, apiserver  *child
	apiserverLogPath string
	etcdLogPath      string

	clientsOnce    sync.Once // tests of a package share one KubeAPI, in parallel too
	dynamicClient  dynamic.Interface
	adminClientset kubernetes.Interface
	clientsErr     error
}

// child is a started process whose exit is observed once.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

func (c *child) kill() {
	if c == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	c.log.Close()
}

func (c *child) hasExited() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// kubeBinDir returns the directory holding etcd and kube-apiserver.
func kubeBinDir() string {
	if d := os.Getenv(EnvKubeBinDir); d != "" {
		return d
	}
	return defaultKubeBinDir
}

// StartKubeAPI starts etcd and kube-apiserver in a new directory and waits until the API server
// answers /readyz. Meant for TestMain (one per test package: a start costs 2–3 s and ~350 MB);
// hand the error to RequireKubeAPI in each test, and call Stop after m.Run.
func StartKubeAPI(opts KubeAPIOptions) (*KubeAPI, error) {
	bin := kubeBinDir()
	for _, name := range []string{"etcd", "kube-apiserver"} {
		fi, err := os.Stat(filepath.Join(bin, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return nil, fmt.Errorf("%s not found in %s (set %s to look elsewhere); build etcd and kube-apiserver with %s",
				name, bin, EnvKubeBinDir, kubeInstallHint)
		}
	}
	seen := map[string]bool{adminUser: true}
	for _, u := range opts.Users {
		if u.Name == "" || seen[u.Name] || strings.ContainsAny(u.Name, ",\"\n") {
			return nil, fmt.Errorf("kube-apiserver: user name %q is empty, repeated, reserved or not CSV-safe", u.Name)
		}
		for _, g := range u.Groups {
			if g == "" || strings.ContainsAny(g, ",\"\n") {
				return nil, fmt.Errorf("kube-apiserver: group %q of user %s is empty or not CSV-safe", g, u.Name)
			}
		}
		seen[u.Name] = true
	}
	// The ports are free when picked but another process may take one before etcd or the API
	// server binds it (neither accepts port 0): then the whole start is tried once more.
	k, err := startKubeAPI(bin, opts)
	if err != nil && errors.Is(err, errPortTaken) {
		k, err = startKubeAPI(bin, opts)
	}
	return k, err
}

var errPortTaken = errors.New("a port picked as free was taken meanwhile")

func startKubeAPI(bin string, opts KubeAPIOptions) (k *KubeAPI, err error) {
	dir, err := processTempDir("karmor-kubeapi-")
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver: temp dir: %w", err)
	}
	k = &KubeAPI{Dir: dir, CAFile: filepath.Join(dir, "certs", "apiserver.crt"), tokens: map[string]string{}}
	defer func() {
		if err != nil {
			k.Stop()
			k = nil
		}
	}()
	ports, err := freePorts(4)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver: picking free ports: %w", err)
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	metricsURL := "http://127.0.0.1:" + strconv.Itoa(ports[2])
	k.Host = "https://127.0.0.1:" + strconv.Itoa(ports[3])

	if err := k.writeTokens(opts.Users); err != nil {
		return nil, err
	}
	if err := writeServiceAccountKey(filepath.Join(dir, "sa.key")); err != nil {
		return nil, err
	}

	k.etcdLogPath = filepath.Join(dir, "etcd.log")
	k.etcd, err = startChild(filepath.Join(bin, "etcd"), k.etcdLogPath,
		"--name=test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL, "--listen-metrics-urls="+metricsURL,
		// Test data need not survive a crash, and fsync is most of etcd's latency on a busy disk.
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return nil, err
	}
	k.apiserverLogPath = filepath.Join(dir, "kube-apiserver.log")
	k.apiserver, err = startChild(filepath.Join(bin, "kube-apiserver"), k.apiserverLogPath,
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[3]), "--cert-dir="+filepath.Join(dir, "certs"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		// No controller-manager creates service-account tokens, so pods could not be admitted.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true", "--profiling=false")
	if err != nil {
		return nil, err
	}
	if err := k.waitReady(); err != nil {
		return nil, err
	}
	return k, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago: all are held open
// together so none is handed out twice.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeTokens writes tokens.csv: a random bearer token for the admin (group system:masters)
// and for each extra user.
func (k *KubeAPI) writeTokens(users []KubeUser) error {
	var b strings.Builder
	add := func(name string, groups []string) error {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return err
		}
		tok := hex.EncodeToString(raw)
		k.tokens[name] = tok
		fmt.Fprintf(&b, "%s,%s,%s-uid", tok, name, name)
		if len(groups) > 0 {
			fmt.Fprintf(&b, ",\"%s\"", strings.Join(groups, ","))
		}
		b.WriteString("\n")
		return nil
	}
	if err := add(adminUser, []string{"system:masters"}); err != nil {
		return fmt.Errorf("kube-apiserver: token: %w", err)
	}
	for _, u := range users {
		if err := add(u.Name, u.Groups); err != nil {
			return fmt.Errorf("kube-apiserver: token: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(k.Dir, "tokens.csv"), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("kube-apiserver: tokens.csv: %w", err)
	}
	return nil
}

// writeServiceAccountKey writes the RSA key the API server signs and checks service-account
// tokens with (it refuses to start without one).
func writeServiceAccountKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("kube-apiserver: service-account key: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		return fmt.Errorf("kube-apiserver: service-account key: %w", err)
	}
	return nil
}

// startChild starts a program with its output in logPath. Pdeathsig kills it with the test
// binary even when that dies without running Stop (a panic, a timeout, SIGKILL).
func startChild(path, logPath string, args ...string) (*child, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", filepath.Base(path), err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{}), log: logf}
	go func() { _ = cmd.Wait(); close(c.exited) }()
	return c, nil
}

// waitReady polls /readyz with the admin token until it answers 200, either process exits, or
// kubeReadyTimeout passes.
func (k *KubeAPI) waitReady() error {
	deadline := time.Now().Add(kubeReadyTimeout)
	var last string
	for {
		for _, c := range []struct {
			name string
			ch   *child
		}{{"etcd", k.etcd}, {"kube-apiserver", k.apiserver}} {
			if c.ch.hasExited() {
				return k.startError(fmt.Sprintf("%s exited during start-up: %v", c.name, c.ch.cmd.ProcessState))
			}
		}
		if status, err := k.readyz(); err != nil {
			last = err.Error()
		} else if status == http.StatusOK {
			return nil
		} else {
			last = "/readyz answered " + strconv.Itoa(status)
		}
		if time.Now().After(deadline) {
			return k.startError(fmt.Sprintf("not ready after %s (last: %s)", kubeReadyTimeout, last))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readyz asks /readyz once. The certificate appears only once the server has started.
func (k *KubeAPI) readyz() (int, error) {
	ca, err := os.ReadFile(k.CAFile)
	if err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return 0, fmt.Errorf("no certificate in %s yet", k.CAFile)
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, k.Host+"/readyz", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+k.tokens[adminUser])
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}

// startError builds a start-up failure carrying the tails of both logs; a port taken meanwhile
// is marked so StartKubeAPI tries once more.
func (k *KubeAPI) startError(what string) error {
	apiLog, etcdLog := logTail(k.apiserverLogPath), logTail(k.etcdLogPath)
	err := fmt.Errorf("kube-apiserver: %s\n--- kube-apiserver log (tail) ---\n%s\n--- etcd log (tail) ---\n%s", what, apiLog, etcdLog)
	if strings.Contains(apiLog, "address already in use") || strings.Contains(etcdLog, "address already in use") {
		return fmt.Errorf("%w: %w", errPortTaken, err)
	}
	return err
}

// logTail returns the last lines (at most 4 KiB) of a log file.
func logTail(path string) string {
	const maxTail = 4 << 10
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxTail {
		_, _ = f.Seek(-maxTail, io.SeekEnd)
	}
	b, _ := io.ReadAll(io.LimitReader(f, maxTail))
	return strings.TrimSpace(string(b))
}

// Stop kills the API server and etcd and removes Dir. Safe on nil (a failed start).
func (k *KubeAPI) Stop() {
	if k == nil {
		return
	}
	k.apiserver.kill()
	k.etcd.kill()
	k.apiserver, k.etcd = nil, nil
	if k.Dir != "" {
		os.RemoveAll(k.Dir)
	}
}

// RequireKubeAPI returns k, or stops the test (see Unavailable) with why StartKubeAPI failed.
func RequireKubeAPI(t testing.TB, k *KubeAPI, startErr error) *KubeAPI {
	t.Helper()
	if startErr != nil {
		Unavailable(t, "a real kube-apiserver is needed: %v", startErr)
	}
	if k == nil {
		Unavailable(t, "a real kube-apiserver is needed but none was started (StartKubeAPI in TestMain)")
	}
	return k
}

// AdminConfig returns a client configuration for the admin (group system:masters).
func (k *KubeAPI) AdminConfig() *rest.Config { return k.config(adminUser) }

// UserConfig returns a client configuration for an extra user of KubeAPIOptions.Users ("admin"
// is the admin). An unknown name is a mistake in the test and panics.
func (k *KubeAPI) UserConfig(name string) *rest.Config { return k.config(name) }

func (k *KubeAPI) config(user string) *rest.Config {
	tok, ok := k.tokens[user]
	if !ok {
		panic(fmt.Sprintf("testutil: KubeAPI has no user %q (add it to KubeAPIOptions.Users)", user))
	}
	return &rest.Config{
		Host:            k.Host,
		BearerToken:     tok,
		TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile},
		// The server is the test's own: client-side throttling (5 QPS by default) would only
		// slow tests down. Code under test sets its own limits on the configs it is given.
		QPS: -1,
	}
}

// WriteKubeconfig writes a kubeconfig for user ("admin" = the admin) into the test's temp dir
// and returns its path, for CLIs (kubectl, --kubeconfig flags).
func (k *KubeAPI) WriteKubeconfig(t testing.TB, user string) string {
	t.Helper()
	tok, ok := k.tokens[user]
	if !ok {
		t.Fatalf("KubeAPI has no user %q (add it to KubeAPIOptions.Users)", user)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: k.Host, CertificateAuthority: k.CAFile}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: tok}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig-"+user)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	return path
}

// clients returns the admin's dynamic client and clientset, made once.
func (k *KubeAPI) clients() (dynamic.Interface, kubernetes.Interface, error) {
	k.clientsOnce.Do(func() {
		k.dynamicClient, k.clientsErr = dynamic.NewForConfig(k.AdminConfig())
		if k.clientsErr == nil {
			k.adminClientset, k.clientsErr = kubernetes.NewForConfig(k.AdminConfig())
		}
	})
	return k.dynamicClient, k.adminClientset, k.clientsErr
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates (or updates) the CustomResourceDefinitions in the YAML files and waits
// until each is Established and its resources can be listed in every served version: a fresh
// CRD's list answers 404 for about a second after Established.
func (k *KubeAPI) InstallCRDs(ctx context.Context, files ...string) error {
	ctx, cancel := context.WithTimeout(ctx, crdReadyTimeout)
	defer cancel()
	dc, _, err := k.clients()
	if err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	var crds []*unstructured.Unstructured
	for _, f := range files {
		objs, err := readCRDs(f)
		if err != nil {
			return err
		}
		crds = append(crds, objs...)
	}
	for _, crd := range crds {
		if err := applyCRD(ctx, dc, crd); err != nil {
			return err
		}
	}
	for _, crd := range crds {
		if err := waitCRDUsable(ctx, dc, crd); err != nil {
			return err
		}
	}
	return nil
}

// readCRDs parses the YAML documents of a file, each of which must be a CustomResourceDefinition.
func readCRDs(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("install CRDs: %w", err)
	}
	var out []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("install CRDs: %s: %w", path, err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("install CRDs: %s: %w", path, err)
		}
		if s := bytes.TrimSpace(js); len(s) == 0 || bytes.Equal(s, []byte("null")) {
			continue // an empty document (a leading or trailing ---)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("install CRDs: %s: %w", path, err)
		}
		if obj.GetKind() != "CustomResourceDefinition" {
			return nil, fmt.Errorf("install CRDs: %s holds a %s %q, not a CustomResourceDefinition", path, obj.GetKind(), obj.GetName())
		}
		out = append(out, obj)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("install CRDs: %s holds no CustomResourceDefinition", path)
	}
	return out, nil
}

// applyCRD creates crd, or replaces the spec of the one already there.
func applyCRD(ctx context.Context, dc dynamic.Interface, crd *unstructured.Unstructured) error {
	client := dc.Resource(crdGVR)
	_, err := client.Create(ctx, crd, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("install CRD %s: %w", crd.GetName(), err)
		}
		return nil
	}
	current, err := client.Get(ctx, crd.GetName(), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("install CRD %s: %w", crd.GetName(), err)
	}
	update := crd.DeepCopy()
	update.SetResourceVersion(current.GetResourceVersion())
	if _, err := client.Update(ctx, update, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("install CRD %s: update: %w", crd.GetName(), err)
	}
	return nil
}

// waitCRDUsable waits for the CRD's Established condition, then for a successful list of its
// resource in each served version.
func waitCRDUsable(ctx context.Context, dc dynamic.Interface, crd *unstructured.Unstructured) error {
	name := crd.GetName()
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	scope, _, _ := unstructured.NestedString(crd.Object, "spec", "scope")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	var served []string
	for _, v := range versions {
		m, _ := v.(map[string]any)
		if s, _ := m["served"].(bool); s {
			if n, _ := m["name"].(string); n != "" {
				served = append(served, n)
			}
		}
	}
	if group == "" || plural == "" || len(served) == 0 {
		return fmt.Errorf("install CRD %s: spec lacks group, names.plural or a served version", name)
	}
	var last error
	poll := func(check func() error) error {
		for {
			if last = check(); last == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("install CRD %s: not usable: %w (last: %v)", name, ctx.Err(), last)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	err := poll(func() error {
		got, err := dc.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return errors.New("not Established yet")
	})
	if err != nil {
		return err
	}
	for _, v := range served {
		gvr := schema.GroupVersionResource{Group: group, Version: v, Resource: plural}
		err := poll(func() error {
			var err error
			if scope == "Namespaced" {
				_, err = dc.Resource(gvr).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{Limit: 1})
			} else {
				_, err = dc.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// KubeArmorCRDFiles returns KubeArmor's four CRD files from ../shared/kubearmor/deployments/CRD,
// or stops the test (see Unavailable) when they are not there.
func KubeArmorCRDFiles(t testing.TB) []string {
	t.Helper()
	dir := SharedDir(t, filepath.Join("kubearmor", "deployments", "CRD"))
	var files []string
	for _, kind := range []string{"KubeArmorPolicy", "KubeArmorClusterPolicy", "KubeArmorHostPolicy", "KubeArmorNetworkPolicy"} {
		p := filepath.Join(dir, kind+".yaml")
		if _, err := os.Stat(p); err != nil {
			Unavailable(t, "KubeArmor's CRD %s is missing (%v); the project's shared material holds KubeArmor's deployments/CRD", p, err)
		}
		files = append(files, p)
	}
	return files
}

// NewNamespace creates a namespace named prefix-<random> for one test. Nothing deletes it: with
// no controller-manager here a deleted namespace stays Terminating for good, which would only
// block a later test reusing the name.
func (k *KubeAPI) NewNamespace(t testing.TB, prefix string) string {
	t.Helper()
	_, cs, err := k.clients()
	if err != nil {
		t.Fatalf("namespace: %v", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	got, err := cs.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s-*: %v", prefix, err)
	}
	return got.Name
}
