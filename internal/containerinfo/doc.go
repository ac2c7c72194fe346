// Package containerinfo turns what an OCI runtime says about a container (its state JSON and
// its bundle's config.json) and what /proc says about its init process into an
// agentapi.Container.
//
// karmor-hook uses it on every container start, and karmord uses it to reconcile with the
// runtimes' state directories, so it is generic: nothing here knows which runtime is asking.
// Every input is untrusted and bounded: the state and the config are size-capped, annotation and
// label maps are bounded in count and size, and /proc is read under a configurable root so that
// tests can supply their own.
//
// It imports only the standard library, the runtime-spec types and pkg/agentapi, because
// karmor-hook links it.
package containerinfo
