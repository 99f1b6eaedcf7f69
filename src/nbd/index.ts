/**
 * The NBD layer: serves block exports (zvols, raw files) to any Network Block Device client — the Linux
 * kernel's nbd-client, qemu, libnbd's nbdcopy/nbdinfo — over TCP or a Unix socket.
 *
 * Theory. The layer depends on nothing but the BlockExport interface it declares (server.ts): a byte
 * range with read, write, flush, trim and write-zeroes. The volume layer implements it; so does a plain
 * file (file-export.ts), which is what the tests serve through real clients nobody here wrote.
 *
 * - Handshake: fixed newstyle only (NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES). Options EXPORT_NAME,
 *   INFO, GO, LIST and ABORT are served; everything else (structured replies, TLS, meta contexts) gets
 *   NBD_REP_ERR_UNSUP, so every reply in transmission is a simple reply.
 * - Transmission is pipelined: the next request is parsed while earlier ones run, and replies go out as
 *   operations finish, in any order. Reads run concurrently with everything. A mutation (write, trim,
 *   write-zeroes) waits only for earlier mutations whose ranges overlap it, so overlapping writes land in
 *   request order; a flush waits for every earlier mutation, then calls the export's flush (durable on
 *   return). FUA is a flush after the mutation.
 * - CAN_MULTI_CONN is advertised because BlockExport.flush covers writes from every connection, so a
 *   client may spread its queue over several connections and flush on any one of them.
 * - Memory is bounded per connection: payload bytes of admitted-but-unanswered requests (write payloads
 *   buffered, read buffers until their reply is flushed to the socket) are capped (64 MiB by default),
 *   and so is their count. Over the cap the server stops asking for bytes, the socket pauses, and TCP
 *   flow control pushes back on the client. No request payload exceeds 32 MiB, and the number of
 *   connections is capped (64 by default), so the server's whole footprint has a bound.
 * - Robustness: a malformed request (bad range, oversize length, unknown command or flag) gets EINVAL, a
 *   write to a read-only export EPERM, and the stream stays in sync (an oversize write payload is skipped
 *   in bounded steps). A bad magic means the stream cannot be trusted: the connection is closed. A client
 *   that vanishes mid-request only ends its own connection; nothing a client sends can crash the server.
 * - Shutdown: close() stops accepting, stops reading, lets running operations finish and their replies
 *   flush (up to a grace period), then closes each connection — the spec's "wait for in-flight requests".
 *   disconnect(name) does the same for the connections of one export, while the others keep serving.
 */
export { NbdServer } from './server.js';
export type { BlockExport, ExportCatalog, ExportSource, NbdAddress, NbdLimits, NbdListenOptions, NbdServerOptions } from './server.js';
export { FileBlockExport, type FileBlockExportOptions } from './file-export.js';
export * as nbdProtocol from './protocol.js';
