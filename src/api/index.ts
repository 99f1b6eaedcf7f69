/**
 * The API layer: cairnd's HTTP API on a Unix socket under CAIRN_HOME, and the client the CLI uses.
 *
 * Theory. The daemon is the one owner of every pool it imports (invariant 5); every other process — the
 * CLI, scripts — talks to it. Requests are JSON verbs (POST /v1/<verb>) validated against a schema table
 * (protocol.ts) before they reach a pool; file bodies stream in and out in bounded chunks. The daemon
 * remembers what it imported in pools.json (OpenZFS's cachefile) so a restart, clean or after kill -9,
 * re-imports the same pools from the same devices.
 *
 * The daemon also serves datasets through the operating system: FUSE mounts of filesystems (mounts.ts,
 * recorded in mounts.json so a crashed daemon's dead mounts are cleaned at the next start) and NBD
 * exports of volumes (nbd-exports.ts, one NBD server per listen address). Both end before their dataset
 * is destroyed or their pool exported, and on daemon stop.
 *
 * This entry exports only the client side, so the CLI starts without loading the pool engine; the
 * daemon's own entry is daemon-main.ts.
 */
export { DaemonClient, connectDaemon, startDaemon, DAEMON_START_TIMEOUT_MS } from './client.js';
export { cairnHome, prepareHome, processAlive, readPid, type CairnHome } from './home.js';
export type {
  ApiResponse,
  DaemonInfo,
  DatasetRow,
  DatasetSelection,
  MountRow,
  NbdExportRow,
  PoolIostat,
  Verb,
  VerbArgs,
  VerbResult,
  WireDestroyResult,
  WireDirEntry,
  WireProperty,
  WireStat,
} from './protocol.js';
