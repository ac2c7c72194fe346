package kubearmor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// The policy ledger: the policies KubeArmor may hold because karmord sent them, kept on disk so
// that a policy dropped while karmord was not running is still deleted from KubeArmor, which
// saves every policy it is sent and restores them all when it starts. A DELETED must carry the
// selector KubeArmor holds the policy under (it looks the policy up by its selector before
// removing its saved copy), so each entry keeps the whole object last sent.

// maxLedger bounds the ledger file read at start.
const maxLedger = 64 << 20

// ledgerVersion is the format written; another version is not read (the ledger starts empty).
const ledgerVersion = 1

type ledgerEntry struct {
	Service string          `json:"service"`
	Object  json.RawMessage `json:"object"`
}

type ledgerFile struct {
	Version  int                    `json:"version"`
	Policies map[string]ledgerEntry `json:"policies"`
}

// decodeLedger reads a ledger, checking every entry: KubeArmor uses the name as a file name.
func decodeLedger(data []byte) (map[string]ledgerEntry, error) {
	var lf ledgerFile
	if err := json.Unmarshal(data, &lf); err != nil {
		return nil, fmt.Errorf("policy ledger: %w", err)
	}
	if lf.Version != ledgerVersion {
		return nil, fmt.Errorf("policy ledger: version %d, want %d", lf.Version, ledgerVersion)
	}
	out := make(map[string]ledgerEntry, len(lf.Policies))
	for name, e := range lf.Policies {
		if err := checkLedgerEntry(name, e); err != nil {
			return nil, fmt.Errorf("policy ledger: %w", err)
		}
		out[name] = e
	}
	return out, nil
}

func checkLedgerEntry(name string, e ledgerEntry) error {
	if !safePolicyName(name) {
		return fmt.Errorf("policy name %.64q is not a Kubernetes object name", name)
	}
	if e.Service != ServiceContainer && e.Service != ServiceHost {
		return fmt.Errorf("policy %s: unknown service %.32q", name, e.Service)
	}
	if len(e.Object) == 0 || len(e.Object) > maxPolicyObject || !json.Valid(e.Object) {
		return fmt.Errorf("policy %s: the object is not JSON of at most %d bytes", name, maxPolicyObject)
	}
	return nil
}

// safePolicyName accepts the names Kubernetes accepts for objects (DNS subdomains), which is
// what the validator lets through and what KubeArmor can use as a file name.
func safePolicyName(name string) bool {
	if name == "" || len(name) > 253 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// readLedger reads the ledger at path; a missing file is an empty ledger.
func readLedger(path string) (map[string]ledgerEntry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]ledgerEntry{}, nil
	}
	if err != nil {
		return map[string]ledgerEntry{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxLedger+1))
	if err != nil {
		return map[string]ledgerEntry{}, err
	}
	if len(data) > maxLedger {
		return map[string]ledgerEntry{}, fmt.Errorf("policy ledger %s is larger than %d bytes", path, maxLedger)
	}
	l, err := decodeLedger(data)
	if err != nil {
		return map[string]ledgerEntry{}, err
	}
	return l, nil
}

// writeLedger replaces the ledger at path atomically (a temporary file in the same directory,
// synced, then renamed over it).
func writeLedger(path string, l map[string]ledgerEntry) error {
	data, err := json.Marshal(ledgerFile{Version: ledgerVersion, Policies: l})
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ledgerNames returns the names of l in order, for deterministic sending.
func ledgerNames(l map[string]ledgerEntry) []string {
	names := make([]string, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
