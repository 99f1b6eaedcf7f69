/**
 * FUSE frontend: serves a dataset's FileSystemApi as a Linux mount.
 *
 * What it promises
 * - Every POSIX call on the mount becomes one FileSystemApi call (or a few: create-or-open, hidden
 *   links for unlinked open files) on inode numbers; node ids are inode numbers, the root is node 1.
 * - The server checks permissions with Linux's rules (permissions.ts: supplementary groups and
 *   capabilities read from /proc when a decision needs them; uid 0 holds every capability); names are
 *   cached by the kernel only under directories every caller may search. New files belong to the
 *   calling uid/gid.
 * - fsync returns only after the onSync hook (the pool's sync) resolved: durable on return.
 * - Memory is bounded: at most REQUESTS_IN_FLIGHT_MAX requests, each in a fixed pair of buffers.
 * - Errors: CairnError codes become their errno; anything unexpected is EIO (and reported to onError).
 * - With a snapshot provider (MountOptions.snapshots), `.cairn/snapshot/<name>/` is the read-only root of
 *   each snapshot, as ZFS's `.zfs/snapshot` (snapshot-dir.ts): listed fresh at most once per attribute
 *   timeout, EROFS for every change, ESTALE for nodes of a destroyed snapshot, hidden from the root
 *   listing unless snapdir is 'visible'. Node ids are then `fsIndex * 2^40 + ino` (live index 0, so a
 *   live inode's number is unchanged), which needs live inode numbers below 2^40 and at most 2^13 file
 *   systems per mount (an index of a gone snapshot is reused past that).
 *
 * How: the kernel protocol is spoken on /dev/fuse from TypeScript, mounted by passing the device fd to
 * mount(8) (root only); docs/fuse.md records why this beat a libfuse addon, with measurements. A Worker
 * thread reads the device (and answers FLUSH itself), the JavaScript thread serves the requests.
 *
 * The one rule for callers: the process that serves a mount must not wait on that mount synchronously
 * (readFileSync on it, execSync of a tool that reads it), and must unmount (or abort()) before exiting.
 */
export { cleanupStaleMount, errnoOf, fuseAvailable, mountFilesystem, type FuseMount, type MountOptions } from './mount.js';
export { CONTROL_DIR_NAME, SNAPSHOT_DIR_NAME, type SnapdirVisibility, type SnapshotProvider } from './snapshot-dir.js';
