// Package podmanlabels gives karmord the labels of Podman containers, which Podman 4 keeps out
// of the OCI config and out of the state its hooks receive: `podman run --label app=web` lives
// only in libpod's state database, a BoltDB file (<graphroot>/libpod/bolt_state.db, by default
// /var/lib/containers/storage/libpod/bolt_state.db for rootful Podman). Verified with Podman
// 4.3.1 on Debian 12: the database's top-level bucket "ctr" holds a bucket per container, named
// by its full ID, whose "config" key is the container's config as JSON, with the labels in its
// "labels" object.
//
// Podman opens that file read-write for every operation, holding bbolt's exclusive flock for a
// few milliseconds, and waits for the lock with no timeout. So a Reader never keeps the file
// open: each lookup takes the shared lock for at most a bounded wait, reads one record and
// closes the file; answers are cached per container (labels never change during a container's
// life). The file is read by this package's own bounded BoltDB reader rather than by
// go.etcd.io/bbolt, which trusts its file and crashes the process on some damaged ones.
package podmanlabels
