// Package policysource follows the places karmord takes KubeArmor policies from (a watched
// directory, OCI references polled at an interval) and publishes their combined policies as
// one immutable, pre-indexed Set.
//
// Every source checks for new content on its own goroutine, parses and validates it with the
// strict parser of pkg/policy, and hands it to the Manager only when all of it is valid. The
// Manager swaps the combined Set in with one atomic pointer store, so readers (the hook's ack
// path among them) never lock and never wait. A failure of any kind (unreadable directory,
// registry down, authentication, an invalid policy pushed with --skip-validate) leaves the last
// good content of that source in force and is visible in the source's Status and in a Change.
//
// An OCI source keeps its last good content in a cache directory (one file per reference,
// written atomically, verified when read), and loads it before its first poll, so a node that
// boots without registry access enforces the policies it had.
package policysource
