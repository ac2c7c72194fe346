package oci

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// ErrNotPolicyArtifact reports a manifest that holds no KubeArmor policy layer.
var ErrNotPolicyArtifact = errors.New("not a KubeArmor policy artifact")

// registryError explains a failed registry operation and says what the user can do.
// action is "pull" or "push".
func registryError(err error, ref Reference, action string) error {
	if err == nil {
		return nil
	}
	host := ref.Registry
	login := "docker login"
	if h := ref.LoginHost(); h != "" {
		login += " " + h
	}
	var resp *errcode.ErrorResponse
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &resp) && resp.StatusCode == http.StatusUnauthorized,
		errors.Is(err, auth.ErrBasicCredentialNotFound):
		return fmt.Errorf("registry %s refused to let us %s %s (401 Unauthorized): log in with `%s`, or pass -u USER with -p PASSWORD or --password-stdin: %w",
			host, action, ref.Name(), login, err)
	case errors.As(err, &resp) && resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("registry %s denied %s access to %s (403 Forbidden): the credentials in use lack that permission; log in as an account that has it (`%s`, or -u/-p): %w",
			host, action, ref.Name(), login, err)
	case errors.Is(err, errdef.ErrNotFound):
		return fmt.Errorf("%s not found in registry %s: check the repository and tag: %w", ref, host, err)
	case errors.As(err, &unknownAuthority):
		return fmt.Errorf("the TLS certificate of %s is signed by an unknown authority: pass its CA with --ca-file, or --insecure to skip verification: %w", host, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("the TLS certificate of %s does not match its name: %w", host, err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("registry %s speaks plain HTTP: pass --plain-http or set %s=true: %w", host, EnvPlainHTTP, err)
	}
	return fmt.Errorf("%s %s: %w", action, ref, err)
}
