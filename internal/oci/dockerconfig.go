package oci

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"oras.land/oras-go/v2/registry/remote/auth"
)

// maxDockerConfigSize bounds an in-memory Docker config: a Secret is at most 1 MiB anyway.
const maxDockerConfigSize = 1 << 20

// dockerAuth is one entry of a Docker config's auths.
type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// dockerConfigCredential answers with the auths of a Docker config.json held in memory, the
// format of a kubernetes.io/dockerconfigjson Secret. Keys are matched by host, the way Docker
// and the kubelet write them: with or without a scheme and path, and Docker Hub under any of
// its names.
func dockerConfigCredential(data []byte) (auth.CredentialFunc, error) {
	if len(data) > maxDockerConfigSize {
		return nil, fmt.Errorf("docker config is %d bytes, more than %d", len(data), maxDockerConfigSize)
	}
	var cfg struct {
		Auths map[string]dockerAuth `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("docker config is not valid JSON with \"auths\": %w", err)
	}
	creds := make(map[string]auth.Credential, len(cfg.Auths))
	for key, a := range cfg.Auths {
		c := auth.Credential{Username: a.Username, Password: a.Password, RefreshToken: a.IdentityToken, AccessToken: a.RegistryToken}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("docker config: auth of %q is not base64: %w", key, err)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("docker config: auth of %q is not user:password", key)
			}
			c.Username, c.Password = user, pass
		}
		creds[configHost(key)] = c
	}
	return func(_ context.Context, hostport string) (auth.Credential, error) {
		if c, ok := creds[configHost(hostport)]; ok {
			return c, nil
		}
		return auth.EmptyCredential, nil
	}, nil
}

// configHost reduces a Docker config key or a registry host to the host it names.
func configHost(key string) string {
	host := key
	if _, rest, ok := strings.Cut(host, "://"); ok {
		host = rest
	}
	host, _, _ = strings.Cut(host, "/")
	host = strings.ToLower(host)
	switch host {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return "docker.io"
	}
	return host
}
