/**
 * Serves a FileSystemApi as a Linux FUSE mount by speaking the kernel protocol on /dev/fuse directly
 * (why not a libfuse binding: docs/fuse.md). One FuseSession per mount: a reader thread (a Worker) reads
 * requests from the device into shared slots, the JavaScript thread dispatches each to an async handler,
 * and the answer goes back with one write(2): from the reader thread when it waited for it (a lone
 * small request, REPLY_WAIT_MICROSECONDS_DEFAULT), else from the JavaScript thread.
 * At most REQUESTS_IN_FLIGHT_MAX requests run at once, each in a slot with a fixed request and reply
 * buffer, so memory is bounded whatever the clients do.
 */
import { encodeNameBytes, nameByteLength } from '../util/name-bytes.js';
import * as nodeFs from 'node:fs';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { assert } from '../util/assert.js';
import type { DirEntry, FileSystemApi, SetAttr, Stat } from '../fs/types.js';
import { S_IFMT, S_IFREG, S_IPERM } from '../fs/index.js';
import type { FsChange } from '../fs/change-reporting.js';
import { CairnError, isCairnError } from '../util/errors.js';
import { E, ERRNO, ErrnoReply } from './errno.js';
import { SnapshotNamespace, type SnapdirVisibility, type SnapshotProvider } from './snapshot-dir.js';
import {
  Caller,
  MAY_EXEC,
  MAY_READ,
  MAY_WRITE,
  O_ACCMODE,
  checkSetattr,
  isSticky,
  modeAfterKillingSuidSgid,
  openMask,
  permitted,
  protectedHardlinksEnabled,
  requireAccess,
  requireCreate,
  requireDelete,
  requireLinkSource,
  requireXattrAccess,
  searchableByAll,
} from './permissions.js';
import {
  ATTR_OUT_SIZE_BYTES,
  DIRENT_HEADER_SIZE_BYTES,
  DT_DIR,
  DT_LNK,
  DT_REG,
  ENTRY_OUT_SIZE_BYTES,
  FopenFlag,
  FUSE_OPEN_KILL_SUIDGID,
  FUSE_WRITE_KILL_SUIDGID,
  FUSE_KERNEL_VERSION,
  FUSE_MINOR_VERSION_MIN,
  FUSE_MINOR_VERSION_SPOKEN,
  FUSE_ROOT_ID,
  INIT_OUT_SIZE_BYTES,
  IN_HEADER_SIZE_BYTES,
  InitFlag,
  NOTIFY_INVAL_ENTRY_SIZE_BYTES,
  NOTIFY_INVAL_INODE_SIZE_BYTES,
  NotifyCode,
  OPEN_OUT_SIZE_BYTES,
  OUT_HEADER_SIZE_BYTES,
  Opcode,
  RENAME_NOREPLACE,
  STATFS_OUT_SIZE_BYTES,
  SetattrValid,
  WRITE_IN_SIZE_BYTES,
  XATTR_CREATE,
  XATTR_REPLACE,
  direntPlusSizeBytes,
  direntSizeBytes,
  putAttrOut,
  putEntryOut,
  putNegativeEntryOut,
  readName,
} from './protocol.js';

export interface MountOptions {
  readonly?: boolean;
  /** Let every user (not only the mounting one) use the mount; default true. */
  allowOther?: boolean;
  /** Source name shown in /proc/mounts; default "cairn". */
  name?: string;
  /** Makes everything written so far durable (the pool's sync); fsync returns only after it resolves. */
  onSync?: () => Promise<void>;
  /** Told about failures that are bugs or I/O errors (answered EIO), not about ordinary errno replies. */
  onError?: (error: unknown, opcode: number) => void;
  /**
   * The dataset's snapshots, served read-only under `.cairn/snapshot/<name>/` (as ZFS's `.zfs/snapshot`);
   * absent: no `.cairn` directory. Listed at most once per attribute timeout (CACHE_VALID_SECONDS).
   * Node ids are namespaced per file system (snapshot-dir.ts): live inode numbers must stay below 2^40.
   */
  snapshots?: SnapshotProvider;
  /** How long to poll for a client's next request after answering one (POLL_MICROSECONDS_DEFAULT); 0: never. */
  pollMicroseconds?: number;
  /** How long the reader thread waits to write a lone small request's reply itself (REPLY_WAIT_MICROSECONDS_DEFAULT); 0: never. */
  replyWaitMicroseconds?: number;
  /** Whether `.cairn` shows in the root's listing (ZFS's snapdir property); default 'hidden'. It can be looked up either way. */
  snapdir?: SnapdirVisibility;
}

export interface FuseMount {
  readonly mountpoint: string;
  /** Unmounts (EBUSY while files on it are open) and waits until every request was answered. */
  unmount(): Promise<void>;
  /**
   * Makes the kernel forget what it cached about a change made to the file system behind the mount (the
   * daemon's own file verbs; ChangeReportingFs reports them): names and attributes are cached for
   * LIVE_CACHE_VALID_SECONDS. Sent in order, off this thread; resolves once the kernel took it (a node
   * it does not hold is nothing to forget).
   */
  invalidate(change: FsChange): Promise<void>;
  /**
   * Last resort, never fails: detaches the mount lazily and aborts the kernel connection, so no
   * caller (also none in this process) stays blocked on it. Needs fusectl (/sys/fs/fuse/connections),
   * mounted here if it is not.
   */
  abort(): Promise<void>;
  readonly replyStats: ReplyStats;
}

/** Diagnostic figures: replies the reader thread wrote itself, and its waits for a reply that ran out (REPLY_WAIT_MICROSECONDS_DEFAULT). */
export interface ReplyStats {
  byReader: number;
  waitsRunOut: number;
}

const FUSE_DEVICE_PATH = '/dev/fuse';
const MAX_WRITE_BYTES = 1024 * 1024;
const PAGE_SIZE_BYTES = 4096;
/** Room for the request header and the largest fixed request struct in front of a write's data. */
const SLOT_SIZE_BYTES = MAX_WRITE_BYTES + PAGE_SIZE_BYTES;
const REQUESTS_IN_FLIGHT_MAX = 8;
/**
 * The shared control words: [0, REQUESTS_IN_FLIGHT_MAX) say which slots hold a request, then the count
 * of slot releases (the reader waits on it for a free slot), the hand-off word, each slot's request
 * length, each slot's reply word, the count of replies the reader wrote and of its waits that ran out.
 */
const CONTROL_RELEASES_AT = REQUESTS_IN_FLIGHT_MAX;
const CONTROL_HANDOFF_AT = REQUESTS_IN_FLIGHT_MAX + 1;
const CONTROL_LENGTHS_AT = REQUESTS_IN_FLIGHT_MAX + 2;
const CONTROL_REPLIES_AT = CONTROL_LENGTHS_AT + REQUESTS_IN_FLIGHT_MAX;
/** How many replies the reader thread wrote (it counts them; FuseMount.replyStats). */
const CONTROL_READER_REPLIES_AT = CONTROL_REPLIES_AT + REQUESTS_IN_FLIGHT_MAX;
/** How many of its waits for a reply ran out (FuseMount.replyStats). */
const CONTROL_READER_WAITS_RUN_OUT_AT = CONTROL_READER_REPLIES_AT + 1;
const CONTROL_WORDS = CONTROL_READER_WAITS_RUN_OUT_AT + 1;
/**
 * Reply word: REPLY_WAITING while the reader thread waits to write the slot's reply, REPLY_OWN when the
 * JavaScript thread writes it itself (the reader did not wait, or stopped waiting), the reply's length
 * once it is answered (handed over, or written by the JavaScript thread). Whoever moves the word off
 * REPLY_WAITING decides who writes.
 */
const REPLY_WAITING = 0;
const REPLY_OWN = -1;
/** Hand-off word: 0 idle, HANDOFF_POLLING while the JavaScript thread polls, HANDOFF_TAKEN_BASE + slot once the reader handed one over. */
const HANDOFF_IDLE = 0;
const HANDOFF_POLLING = 1;
const HANDOFF_TAKEN_BASE = 2;
/**
 * How long the JavaScript thread polls for the next request after it answered the last one in flight
 * (MountOptions.pollMicroseconds). A client that works in a loop (stat, create, unlink one file after
 * another) sends its next request within this window; taking it straight from the shared slot saves
 * the message hop from the reader thread (an event-loop wake-up, 25-45 µs here), the bulk of a round
 * trip's own cost, as a kernel socket's busy polling does. After POLLED_IN_A_ROW_MAX requests taken this
 * way in a row, the event loop gets a turn before the next poll.
 */
const POLL_MICROSECONDS_DEFAULT = 50;
const POLLED_IN_A_ROW_MAX = 16;
/**
 * How long the reader thread waits, spinning, for the reply to the request it just handed over, so that
 * it writes the reply itself (MountOptions.replyWaitMicroseconds). The client sleeps on the CPU the
 * reader runs on (the reader woke there when the client's call went to sleep); a reply written from that
 * CPU wakes the client there, while one written by the JavaScript thread on the other CPU wakes it with
 * an interprocessor interrupt to an idle CPU, which a virtual machine pays dearly for (docs/fuse.md has
 * the measurements). The reader reads no further request while it waits, so it waits only when no
 * other request is unanswered and neither the request nor its reply can be large (REPLY_WAIT_MAX_BYTES):
 * a sequential read's read-ahead has several READs queued at once, and their latency is the disk's
 * anyway. Requests of other clients queued meanwhile wait up to that long.
 */
const REPLY_WAIT_MICROSECONDS_DEFAULT = 100;
const REPLY_WAIT_MAX_BYTES = 64 * 1024;
/** Opcodes below this have their own record of how often their replies came in time (all FUSE 7.4x ones). */
const OPCODES_TRACKED = 64;
const READDIR_PAGE_ENTRIES = 64;
/**
 * How long the kernel may cache names (also a name's absence) and attributes of the live file system. The
 * mount's own requests keep the kernel's caches true; a change made behind it is invalidated
 * (FuseMount.invalidate), and a rollback remounts. The long timeout is what lets a second `ls -l` or
 * `stat` be answered without a round trip, as a kernel file system would.
 */
const LIVE_CACHE_VALID_SECONDS = 60;
/** The same for `.cairn/snapshot` and what is under it, where snapshots come and go with no notice. */
const SNAPSHOT_CACHE_VALID_SECONDS = 1;
/**
 * Security xattrs Cairn mounts do not carry, EOPNOTSUPP through a mount: SELinux labels (`ls -l` asks
 * for one on every file until a file system says EOPNOTSUPP) and file capabilities, which the kernel
 * asks for before the first write to every file and would ignore at exec anyway (mounts are nosuid).
 * GlusterFS mounts refuse both the same way unless mounted with --selinux or --capability.
 */
const SECURITY_XATTRS_REFUSED: ReadonlySet<string> = new Set(['security.selinux', 'security.capability']);
/** The one of them the reader thread answers itself, the kernel's question before a write. */
const CAPABILITY_XATTR = 'security.capability';
/** Read-ahead of a mount (the FUSE connection's bdi), as `blockdev --setra`: the kernel's 128 KiB keeps one sequential READ in flight. */
const READ_AHEAD_KB = 4096;
const INIT_TIMEOUT_MS = 10_000;
const DRAIN_TIMEOUT_MS = 10_000;
const TOOL_OUTPUT_MAX_BYTES = 4096;


/**
 * Requests about a node the kernel already holds (not about a name in a directory). If the file system
 * says ENOENT for one, the inode went away under a cached dentry (a rename or unlink raced with this
 * call): ESTALE makes the kernel look the path up again (LOOKUP_REVAL) instead of failing the caller.
 */
const NODE_SUBJECT_OPCODES: ReadonlySet<number> = new Set([
  Opcode.getattr,
  Opcode.setattr,
  Opcode.open,
  Opcode.opendir,
  Opcode.readlink,
  Opcode.getxattr,
  Opcode.listxattr,
]);

const { O_EXCL, O_RDONLY, O_TRUNC } = nodeFs.constants;

/**
 * How files are opened: nothing is buffered per open file, so a close needs no FLUSH (FUSE 7.35); a
 * live file's pages stay in the kernel's page cache across opens, as on a local file system (its data
 * changes come through the mount, or are invalidated, and a rollback remounts; whole blocks read for
 * the kernel skip the ARC, so without this every open would read the file from the device again).
 * A snapshot's files do not keep them: a snapshot destroyed and made again under the same name shows
 * other data at the same node ids.
 */
const LIVE_FILE_OPEN_FLAGS = FopenFlag.noFlush | FopenFlag.keepCache;
const SNAPSHOT_FILE_OPEN_FLAGS = FopenFlag.noFlush;

type ReaderMessage =
  | { kind: 'request'; slot: number; lengthBytes: number }
  /** FORGET and BATCH_FORGET, read by the reader thread: node id and count, pair after pair. */
  | { kind: 'forget'; pairs: number[] }
  /** A reply the reader thread wrote failed other than for an interrupted request or an unmount. */
  | { kind: 'replyFailed'; opcode: number; error: string }
  | { kind: 'end'; error: string | null };

interface ReaderWorkerData {
  fd: number;
  slots: SharedArrayBuffer[];
  /** Each slot's reply buffer, which the reader writes from when it was handed the reply. */
  replies: SharedArrayBuffer[];
  control: SharedArrayBuffer;
  replyWaitMilliseconds: number;
  /** NUL-terminated name of the xattr whose GETXATTR the reader answers EOPNOTSUPP. */
  refusedXattr: Uint8Array;
}

/**
 * The reader thread: blocks in read(2) on /dev/fuse so neither the JavaScript thread nor the libuv pool
 * does. It answers FLUSH itself (nothing is buffered per open file and locks are the kernel's; files
 * are opened FOPEN_NOFLUSH, so only kernels older than FUSE 7.35 send it), passes FORGET and
 * BATCH_FORGET on as plain numbers (they need no reply and no slot) and drops INTERRUPT, so a close
 * that happens while the JavaScript thread is blocked (exec closing a close-on-exec fd during spawn)
 * cannot deadlock. It also answers the kernel's GETXATTR of security.capability (asked
 * before the first write to each file; never carried, see SECURITY_XATTRS_REFUSED), which saves a
 * round trip through the JavaScript thread per file written, and writes the replies of lone small
 * requests that the JavaScript thread answers quickly (REPLY_WAIT_MICROSECONDS_DEFAULT). Plain
 * JavaScript, evaluated, so it needs no loader.
 */
const READER_WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { fd, slots, replies: replyBuffers, control: controlBuffer, refusedXattr, replyWaitMilliseconds } = workerData;
const control = new Int32Array(controlBuffer);
const buffers = slots.map((sab) => Buffer.from(sab));
const replies = replyBuffers.map((sab) => Buffer.from(sab));
const count = buffers.length;
const reply = Buffer.alloc(16);
function takeSlot() {
  for (;;) {
    const generation = Atomics.load(control, ${CONTROL_RELEASES_AT});
    for (let i = 0; i < count; i++) if (Atomics.compareExchange(control, i, 0, 1) === 0) return i;
    Atomics.wait(control, ${CONTROL_RELEASES_AT}, generation);
  }
}
// Another slot counts until its reply is out (a reply length in its word), not until it is released.
function aloneInFlight(i) {
  for (let k = 0; k < count; k++) if (k !== i && Atomics.load(control, k) !== 0 && Atomics.load(control, ${CONTROL_REPLIES_AT} + k) <= 0) return false;
  return true;
}
// Per opcode, how often lately its reply came within the wait (a moving average, 0-256): a wait that
// runs out only keeps a CPU from the threads the handler waits on (a 4 KiB write into an uncached block
// reads it first). Below half, the reader waits only for every 16th request of that opcode, to notice
// when they become fast again (counted per opcode: slow opcodes that take turns must each get tried).
const answeredInTime = new Uint16Array(${OPCODES_TRACKED}).fill(256);
const notWaited = new Uint8Array(${OPCODES_TRACKED});
function worthWaiting(opcode) {
  if (opcode >= ${OPCODES_TRACKED}) return false;
  return answeredInTime[opcode] >= 128 || (++notWaited[opcode] & 15) === 0;
}
function small(opcode, length, b) {
  if (length > ${REPLY_WAIT_MAX_BYTES}) return false;
  if (opcode === ${Opcode.read} || opcode === ${Opcode.readdir} || opcode === ${Opcode.readdirplus}) return b.readUInt32LE(${IN_HEADER_SIZE_BYTES} + 16) <= ${REPLY_WAIT_MAX_BYTES};
  if (opcode === ${Opcode.getxattr} || opcode === ${Opcode.listxattr}) return b.readUInt32LE(${IN_HEADER_SIZE_BYTES}) <= ${REPLY_WAIT_MAX_BYTES};
  // INIT's reply must be out before the mount sets its read-ahead (mountFilesystem)
  return opcode !== ${Opcode.init};
}
for (;;) {
  const i = takeSlot();
  let length;
  try {
    length = fs.readSync(fd, buffers[i], 0, buffers[i].length, null);
  } catch (e) {
    Atomics.store(control, i, 0);
    if (e.code === 'ENOENT' || e.code === 'EINTR' || e.code === 'EAGAIN') continue;
    parentPort.postMessage({ kind: 'end', error: e.code === 'ENODEV' ? null : String(e.message) });
    break;
  }
  const opcode = buffers[i].readUInt32LE(4);
  if (opcode === ${Opcode.forget} || opcode === ${Opcode.batchForget}) {
    const b = buffers[i];
    const pairs = [];
    if (opcode === ${Opcode.forget}) pairs.push(Number(b.readBigUInt64LE(16)), Number(b.readBigUInt64LE(${IN_HEADER_SIZE_BYTES})));
    else {
      const count = b.readUInt32LE(${IN_HEADER_SIZE_BYTES});
      for (let k = 0, at = ${IN_HEADER_SIZE_BYTES} + 8; k < count && at + 16 <= length; k++, at += 16) {
        pairs.push(Number(b.readBigUInt64LE(at)), Number(b.readBigUInt64LE(at + 8)));
      }
    }
    Atomics.store(control, i, 0);
    parentPort.postMessage({ kind: 'forget', pairs });
    continue;
  }
  if (opcode === ${Opcode.interrupt}) {
    Atomics.store(control, i, 0);
    continue;
  }
  const refused = opcode === ${Opcode.getxattr} && length >= ${IN_HEADER_SIZE_BYTES} + 8 + refusedXattr.length &&
    buffers[i].compare(refusedXattr, 0, refusedXattr.length, ${IN_HEADER_SIZE_BYTES} + 8, ${IN_HEADER_SIZE_BYTES} + 8 + refusedXattr.length) === 0;
  if (opcode === ${Opcode.flush} || refused) {
    reply.writeUInt32LE(16, 0);
    reply.writeInt32LE(refused ? -${E.EOPNOTSUPP} : 0, 4);
    buffers[i].copy(reply, 8, 8, 16);
    Atomics.store(control, i, 0);
    try { fs.writeSync(fd, reply, 0, 16); } catch {}
    continue;
  }
  Atomics.store(control, ${CONTROL_LENGTHS_AT} + i, length);
  const waitForReply = replyWaitMilliseconds > 0 && small(opcode, length, buffers[i]) && aloneInFlight(i) && worthWaiting(opcode);
  Atomics.store(control, ${CONTROL_REPLIES_AT} + i, waitForReply ? ${REPLY_WAITING} : ${REPLY_OWN});
  // The JavaScript thread is polling for a request: hand this one over without a message.
  if (Atomics.compareExchange(control, ${CONTROL_HANDOFF_AT}, ${HANDOFF_POLLING}, ${HANDOFF_TAKEN_BASE} + i) !== ${HANDOFF_POLLING}) {
    parentPort.postMessage({ kind: 'request', slot: i, lengthBytes: length });
  }
  if (!waitForReply) continue;
  const deadline = performance.now() + replyWaitMilliseconds;
  let replyLength;
  while ((replyLength = Atomics.load(control, ${CONTROL_REPLIES_AT} + i)) === ${REPLY_WAITING} && performance.now() < deadline);
  if (replyLength === ${REPLY_WAITING}) replyLength = Atomics.compareExchange(control, ${CONTROL_REPLIES_AT} + i, ${REPLY_WAITING}, ${REPLY_OWN});
  answeredInTime[opcode] = (answeredInTime[opcode] * 7 + (replyLength === ${REPLY_WAITING} ? 0 : 256)) >> 3;
  if (replyLength === ${REPLY_WAITING}) {
    Atomics.add(control, ${CONTROL_READER_WAITS_RUN_OUT_AT}, 1);
    continue; // the JavaScript thread writes it
  }
  try {
    fs.writeSync(fd, replies[i], 0, replyLength);
    Atomics.add(control, ${CONTROL_READER_REPLIES_AT}, 1);
  } catch (e) {
    if (e.code !== 'ENOENT' && e.code !== 'ENODEV') parentPort.postMessage({ kind: 'replyFailed', opcode, error: String(e.message) });
  }
}
`;


/** Maps an error to the positive errno the kernel gets (negated on the wire); unknown errors are EIO. */
export function errnoOf(error: unknown): number {
  if (error instanceof ErrnoReply) return error.errnoNumber;
  if (isCairnError(error)) return ERRNO[error.errno] ?? E.EIO;
  return E.EIO;
}

/** setxattr's flags, as FileSystemApi's xattr calls take them. */
interface SetXattrFlags {
  create?: boolean;
  replace?: boolean;
}

/** The xattr calls, present when the file system has them (feature-detected, not required). */
interface XattrCalls {
  getxattr(ino: number, name: string): Promise<Buffer>;
  setxattr(ino: number, name: string, value: Buffer, flags?: SetXattrFlags): Promise<void>;
  listxattr(ino: number): Promise<string[]>;
  removexattr(ino: number, name: string): Promise<void>;
}

function xattrCallsOf(fs: FileSystemApi): XattrCalls | null {
  const f = fs as unknown as Partial<XattrCalls>;
  if (typeof f.getxattr !== 'function' || typeof f.setxattr !== 'function') return null;
  if (typeof f.listxattr !== 'function' || typeof f.removexattr !== 'function') return null;
  return f as XattrCalls;
}

interface Slot {
  index: number;
  request: Buffer;
  /** Shared with the reader thread, which writes the reply from it when handed over (REPLY_WAITING). */
  reply: Buffer;
}

interface FileHandle {
  ino: number;
}

/** One open directory: the page of entries the kernel is reading through, by stream position. */
interface DirHandle {
  ino: number;
  /** Stream position of entries[0]; "." is position 0, ".." 1, the file system's entries from 2. */
  pageStart: number;
  entries: DirEntry[];
  nextCursor: bigint | null;
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

function direntType(kind: DirEntry['kind']): number {
  return kind === 'directory' ? DT_DIR : kind === 'symlink' ? DT_LNK : DT_REG;
}

class FuseSession {
  /** Request buffers shared with the reader thread; replies are built on this thread. */
  private readonly slots: Slot[] = [];
  /** Shared with the reader thread: CONTROL_* above. */
  private readonly control = new Int32Array(new SharedArrayBuffer(4 * CONTROL_WORDS));
  /** Requests taken by polling since the event loop last had a turn. */
  private polledInARow = 0;
  private ended = false;
  private inFlight = 0;
  private readonly drained: Promise<void>;
  private resolveDrained!: () => void;
  readonly initialized: Promise<void>;
  private resolveInitialized!: () => void;
  private rejectInitialized!: (e: Error) => void;
  private readonly files = new Map<number, FileHandle>();
  private readonly dirs = new Map<number, DirHandle>();
  private nextHandle = 1;
  private readonly xattr: XattrCalls | null;
  /** Set when `.cairn/snapshot` is served: tells which nodes are read-only whatever the mount is. */
  private readonly snapshotNamespace: SnapshotNamespace | null;
  /** Invalidation notices not yet written, in order; a repeat of one already waiting is dropped. */
  /**
   * Inodes the kernel holds (node id → lookups it was given). Each is retained in the file system until
   * the kernel forgets it, as a FUSE server must: an unlink or a rename over it then leaves it usable
   * (nlink 0, on the unlinked set) for a path walk that found it just before, instead of freed under it.
   */
  private readonly kernelHeld = new Map<number, { lookups: number; retained: Promise<boolean> }>();
  private readonly notices = new Map<string, Buffer>();
  /**
   * Directories whose names the kernel may hold with a nonzero entry timeout (they were searchable by
   * all when it got them): if one loses an x bit, the kernel must forget its names (permissions.ts).
   */
  private readonly namesCachedUnder = new Set<number>();
  private readonly protectedHardlinks = protectedHardlinksEnabled();
  /** Callers waiting for every notice queued before them to be written. */
  private noticesWritten: Array<() => void> = [];
  private noticing = false;

  constructor(
    private readonly fd: number,
    private readonly fs: FileSystemApi,
    private readonly opts: MountOptions,
  ) {
    this.xattr = xattrCallsOf(fs);
    this.snapshotNamespace = fs instanceof SnapshotNamespace ? fs : null;
    for (let i = 0; i < REQUESTS_IN_FLIGHT_MAX; i++) {
      this.slots.push({ index: i, request: Buffer.from(new SharedArrayBuffer(SLOT_SIZE_BYTES)), reply: Buffer.from(new SharedArrayBuffer(SLOT_SIZE_BYTES)) });
    }
    this.drained = new Promise((resolve) => (this.resolveDrained = resolve));
    this.initialized = new Promise((resolve, reject) => {
      this.resolveInitialized = resolve;
      this.rejectInitialized = reject;
    });
    this.initialized.catch(() => undefined);
  }

  get replyStats(): ReplyStats {
    return { byReader: Atomics.load(this.control, CONTROL_READER_REPLIES_AT), waitsRunOut: Atomics.load(this.control, CONTROL_READER_WAITS_RUN_OUT_AT) };
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Resolves once the kernel closed the connection (unmount) and every request was answered. */
  waitDrained(): Promise<void> {
    return this.drained;
  }

  start(): void {
    const workerData: ReaderWorkerData = {
      fd: this.fd,
      slots: this.slots.map((slot) => slot.request.buffer as SharedArrayBuffer),
      replies: this.slots.map((slot) => slot.reply.buffer as SharedArrayBuffer),
      control: this.control.buffer as SharedArrayBuffer,
      replyWaitMilliseconds: (this.opts.replyWaitMicroseconds ?? REPLY_WAIT_MICROSECONDS_DEFAULT) / 1000,
      refusedXattr: Buffer.from(`${CAPABILITY_XATTR}\0`, 'latin1'),
    };
    const worker = new Worker(READER_WORKER_SOURCE, { eval: true, workerData, execArgv: [] });
    worker.on('message', (message: ReaderMessage) => this.onReaderMessage(message));
    worker.on('error', (e) => this.end(e));
    worker.on('exit', () => this.end(null));
  }

  // ---- request loop ----

  private slot(index: number): Slot {
    const slot = this.slots[index];
    assert(slot !== undefined, `reader named slot ${index} of ${this.slots.length}`);
    return slot;
  }

  private onReaderMessage(message: ReaderMessage): void {
    if (message.kind === 'end') {
      this.end(message.error === null ? null : new Error(message.error));
      return;
    }
    if (message.kind === 'replyFailed') {
      this.opts.onError?.(new Error(`writing a reply: ${message.error}`), message.opcode);
      return;
    }
    if (message.kind === 'forget') {
      for (let k = 0; k + 1 < message.pairs.length; k += 2) this.forget(message.pairs[k] as number, message.pairs[k + 1] as number);
      return;
    }
    this.serve(message.slot, message.lengthBytes);
  }

  private serve(index: number, lengthBytes: number): void {
    const slot = this.slot(index);
    this.inFlight++;
    this.dispatch(slot, lengthBytes)
      .catch((e: unknown) => this.opts.onError?.(e, slot.request.readUInt32LE(4)))
      .finally(() => {
        this.inFlight--;
        // hand the slot back to the reader and wake it if it waits for one
        Atomics.store(this.control, index, 0);
        Atomics.add(this.control, CONTROL_RELEASES_AT, 1);
        Atomics.notify(this.control, CONTROL_RELEASES_AT);
        if (this.ended) this.maybeDrained();
        else if (this.inFlight === 0) this.pollForRequest();
      });
  }

  /** Waits up to pollMicroseconds for the reader to hand over the next request (POLL_MICROSECONDS_DEFAULT above). */
  private pollForRequest(): void {
    const pollMicroseconds = this.opts.pollMicroseconds ?? POLL_MICROSECONDS_DEFAULT;
    if (pollMicroseconds <= 0 || this.polledInARow >= POLLED_IN_A_ROW_MAX) return;
    const control = this.control;
    Atomics.store(control, CONTROL_HANDOFF_AT, HANDOFF_POLLING);
    const deadline = performance.now() + pollMicroseconds / 1000;
    let state = HANDOFF_POLLING;
    while ((state = Atomics.load(control, CONTROL_HANDOFF_AT)) === HANDOFF_POLLING && performance.now() < deadline);
    if (state === HANDOFF_POLLING) {
      state = Atomics.compareExchange(control, CONTROL_HANDOFF_AT, HANDOFF_POLLING, HANDOFF_IDLE);
      if (state === HANDOFF_POLLING) return; // nothing came: the reader posts the next one
    }
    Atomics.store(control, CONTROL_HANDOFF_AT, HANDOFF_IDLE);
    if (this.polledInARow++ === 0) setImmediate(() => (this.polledInARow = 0));
    const index = state - HANDOFF_TAKEN_BASE;
    this.serve(index, Atomics.load(control, CONTROL_LENGTHS_AT + index));
  }

  private end(error: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    if (error) this.opts.onError?.(error, 0);
    // The kernel sends no RELEASE for handles still open when the connection ends: release them here
    // (what cannot be released now, the unlinked set frees when the file system is next opened).
    for (const fh of [...this.files.keys()]) void this.release(BigInt(fh));
    for (const [ino, held] of [...this.kernelHeld]) this.forget(this.nodeId(ino), held.lookups);
    this.rejectInitialized(new CairnError('EIO', `FUSE connection ended before INIT${error ? `: ${error.message}` : ''}`));
    this.maybeDrained();
  }

  private maybeDrained(): void {
    if (this.inFlight === 0 && !this.noticing) this.resolveDrained();
  }

  invalidate(change: FsChange): Promise<void> {
    if (this.ended) return Promise.resolve();
    if (change.kind === 'inode' && this.namesCachedUnder.has(change.ino)) {
      // a chmod behind the mount may have taken an x bit from a directory whose names the kernel caches
      const ino = change.ino;
      this.fs.getattr(ino).then((st) => !searchableByAll(st) && this.forgetNamesUnder(ino), () => undefined);
    }
    let key: string;
    let notice: Buffer;
    if (change.kind === 'entry') {
      const name = encodeNameBytes(change.name);
      const parent = this.nodeId(change.parentIno);
      key = `e${parent}/${change.name}`;
      const length = OUT_HEADER_SIZE_BYTES + NOTIFY_INVAL_ENTRY_SIZE_BYTES + name.length + 1;
      notice = Buffer.alloc(length);
      notice.writeUInt32LE(length, 0);
      notice.writeInt32LE(NotifyCode.invalEntry, 4);
      notice.writeBigUInt64LE(BigInt(parent), OUT_HEADER_SIZE_BYTES);
      notice.writeUInt32LE(name.length, OUT_HEADER_SIZE_BYTES + 8);
      name.copy(notice, OUT_HEADER_SIZE_BYTES + NOTIFY_INVAL_ENTRY_SIZE_BYTES);
    } else {
      const node = this.nodeId(change.ino);
      key = `i${node}`;
      const length = OUT_HEADER_SIZE_BYTES + NOTIFY_INVAL_INODE_SIZE_BYTES;
      notice = this.notices.get(key) ?? Buffer.alloc(length);
      notice.writeUInt32LE(length, 0);
      notice.writeInt32LE(NotifyCode.invalInode, 4);
      notice.writeBigUInt64LE(BigInt(node), OUT_HEADER_SIZE_BYTES);
      // offset 0, length 0: the cached pages too; offset -1: attributes only (a waiting data notice stays one)
      const waitingForData = this.notices.has(key) && notice.readBigInt64LE(OUT_HEADER_SIZE_BYTES + 8) === 0n;
      notice.writeBigInt64LE(change.data || waitingForData ? 0n : -1n, OUT_HEADER_SIZE_BYTES + 8);
    }
    this.notices.set(key, notice);
    const written = new Promise<void>((resolve) => this.noticesWritten.push(resolve));
    if (!this.noticing) void this.writeNotices();
    return written;
  }

  /**
   * Writes the notices one at a time on the libuv pool, never with a synchronous write: the kernel
   * holds an entry notice until no request is working in that directory, and this thread must stay
   * free to answer that request. One at a time, so at most one pool thread waits and file I/O goes on.
   */
  private async writeNotices(): Promise<void> {
    this.noticing = true;
    try {
      for (;;) {
        const next = this.notices.entries().next();
        if (next.done || this.ended) break;
        const [key, notice] = next.value;
        this.notices.delete(key);
        // Waiters queued so far are answered once this batch is out (a later notice may replace theirs).
        const waiters = this.notices.size === 0 ? this.noticesWritten.splice(0) : [];
        // ENOENT: the kernel holds nothing for that node or name, nothing to forget; ENODEV: unmounted.
        await new Promise<void>((resolve) => nodeFs.write(this.fd, notice, 0, notice.length, null, () => resolve()));
        for (const done of waiters) done();
      }
    } finally {
      this.noticing = false;
      for (const done of this.noticesWritten.splice(0)) done(); // ended: nothing is cached any more
      if (this.ended) this.maybeDrained();
    }
  }

  private send(slot: Slot, unique: bigint, errno: number, bodyBytes: number): void {
    const reply = slot.reply;
    const lengthBytes = OUT_HEADER_SIZE_BYTES + bodyBytes;
    // Answered already (a handler that failed after its reply): the reader may be writing from this
    // buffer, and the kernel took the first answer anyway.
    if (Atomics.load(this.control, CONTROL_REPLIES_AT + slot.index) > 0) return;
    reply.writeUInt32LE(lengthBytes, 0);
    reply.writeInt32LE(-errno, 4);
    reply.writeBigUInt64LE(unique, 8);
    // hand it to the reader thread if it still waits to write it (REPLY_WAITING), else write it here
    if (Atomics.compareExchange(this.control, CONTROL_REPLIES_AT + slot.index, REPLY_WAITING, lengthBytes) !== REPLY_WAITING) {
      this.writeReply(reply, lengthBytes);
      Atomics.store(this.control, CONTROL_REPLIES_AT + slot.index, lengthBytes); // answered (the reader's aloneInFlight)
    }
  }

  private writeReply(buf: Buffer, lengthBytes: number): void {
    try {
      nodeFs.writeSync(this.fd, buf, 0, lengthBytes);
    } catch (e) {
      // ENOENT: the request was interrupted and the kernel no longer waits for it; ENODEV: unmounted.
      const errno = -((e as NodeJS.ErrnoException).errno ?? 0);
      if (errno !== E.ENOENT && errno !== E.ENODEV) throw e;
    }
  }

  private sendError(slot: Slot, unique: bigint, errno: number): void {
    this.send(slot, unique, errno, 0);
  }

  // ---- dispatch ----

  private async dispatch(slot: Slot, lengthBytes: number): Promise<void> {
    const req = slot.request;
    const opcode = req.readUInt32LE(4);
    const unique = req.readBigUInt64LE(8);
    try {
      await this.handle(slot, opcode, unique, lengthBytes);
    } catch (e) {
      let errno = errnoOf(e);
      if (errno === E.ENOENT && NODE_SUBJECT_OPCODES.has(opcode)) errno = E.ESTALE;
      if (errno === E.EIO && !(e instanceof ErrnoReply) && !isCairnError(e, 'EIO')) this.opts.onError?.(e, opcode);
      this.sendError(slot, unique, errno);
    }
  }



  private ino(nodeId: number): number {
    return nodeId === FUSE_ROOT_ID ? this.fs.rootIno : nodeId;
  }

  private nodeId(ino: number): number {
    return ino === this.fs.rootIno ? FUSE_ROOT_ID : ino;
  }

  private refuseIfReadonly(): void {
    if (this.opts.readonly) throw new ErrnoReply(E.EROFS);
  }

  /** An entry (node id and attributes) goes to the kernel: one more lookup it holds. */
  private handOut(ino: number): void {
    const retain = this.fs.retain;
    if (retain === undefined || ino === this.fs.rootIno || this.snapshotNamespace?.isReadonlyIno(ino)) return;
    const held = this.kernelHeld.get(ino);
    if (held) {
      held.lookups++;
      return;
    }
    // Started before the reply is written; the inode was just read, so it takes effect before this
    // thread serves another request.
    const retained = retain.call(this.fs, ino).then(
      () => true,
      () => false, // gone already (a race with an unlink): nothing to release later
    );
    this.kernelHeld.set(ino, { lookups: 1, retained });
  }

  private forget(nodeId: number, lookups: number): void {
    const ino = this.ino(nodeId);
    const held = this.kernelHeld.get(ino);
    if (!held) return;
    held.lookups -= lookups;
    if (held.lookups > 0) return;
    this.kernelHeld.delete(ino);
    this.namesCachedUnder.delete(ino); // its names went before it: they hold it
    void held.retained.then(async (retained) => {
      if (retained) await this.fs.release?.(ino);
    }).catch((e: unknown) => this.opts.onError?.(e, Opcode.forget));
  }

  private validSeconds(ino: number): number {
    return this.snapshotNamespace?.isReadonlyIno(ino) ? SNAPSHOT_CACHE_VALID_SECONDS : LIVE_CACHE_VALID_SECONDS;
  }

  /**
   * Replies with an entry under parentIno, whose mode is read again here: a chmod of it may have
   * finished while this request waited (a revalidating LOOKUP does not hold the directory's lock), and
   * from here to the reply nothing else runs on this thread.
   */
  private async replyEntry(slot: Slot, unique: bigint, parentIno: number, st: Stat): Promise<void> {
    const parent = await this.fs.getattr(parentIno);
    this.putEntry(slot.reply, OUT_HEADER_SIZE_BYTES, parent, st);
    this.send(slot, unique, 0, ENTRY_OUT_SIZE_BYTES);
  }

  /**
   * An entry handed to the kernel (one more lookup it holds). Its name may be cached only under a
   * directory every caller may search: the kernel walks cached names without asking (permissions.ts).
   */
  private putEntry(out: Buffer, at: number, parent: Stat, st: Stat): void {
    this.handOut(st.ino);
    const validSeconds = this.validSeconds(st.ino);
    putEntryOut(out, at, this.nodeId(st.ino), st, Math.min(this.nameValidSeconds(parent), validSeconds), validSeconds);
  }

  private nameValidSeconds(parent: Stat): number {
    if (!searchableByAll(parent)) return 0;
    this.namesCachedUnder.add(parent.ino);
    return this.validSeconds(parent.ino);
  }

  /**
   * After dir lost an x bit: makes the kernel forget every name it may cache in it, so the next walk
   * through it asks (and is checked). Notices go after the change's reply: the kernel holds one about a
   * directory until no request works in it.
   */
  private forgetNamesUnder(dirIno: number): void {
    if (!this.namesCachedUnder.delete(dirIno)) return;
    void (async () => {
      for (let cursor: bigint | null = 0n; cursor !== null; ) {
        const page: { entries: DirEntry[]; cursor: bigint | null } = await this.fs.readdir(dirIno, cursor, READDIR_PAGE_ENTRIES * 16);
        for (const entry of page.entries) void this.invalidate({ kind: 'entry', parentIno: dirIno, name: entry.name });
        cursor = page.cursor;
      }
    })().catch((e: unknown) => {
      if (!isCairnError(e, 'ENOENT')) this.opts.onError?.(e, Opcode.setattr);
    });
  }

  private replyAttr(slot: Slot, unique: bigint, st: Stat): void {
    putAttrOut(slot.reply, OUT_HEADER_SIZE_BYTES, st, this.validSeconds(st.ino));
    this.send(slot, unique, 0, ATTR_OUT_SIZE_BYTES);
  }

  /**
   * LOOKUP: a name that is not there in a live directory is answered as a negative entry the kernel
   * keeps, so asking again (a compiler's include path, a shell's PATH) costs no round trip. Under
   * `.cairn` it stays a plain ENOENT: a snapshot may appear there at any time.
   */
  private async lookup(slot: Slot, unique: bigint, caller: Caller, parentIno: number, name: string): Promise<void> {
    const parent = await this.fs.getattr(parentIno);
    requireAccess(caller, parent, MAY_EXEC);
    let st: Stat;
    try {
      st = await this.fs.lookup(parentIno, name);
    } catch (e) {
      if (!isCairnError(e, 'ENOENT') || this.snapshotNamespace?.isReadonlyIno(parentIno)) throw e;
      putNegativeEntryOut(slot.reply, OUT_HEADER_SIZE_BYTES, searchableByAll(parent) ? LIVE_CACHE_VALID_SECONDS : 0);
      return this.send(slot, unique, 0, ENTRY_OUT_SIZE_BYTES);
    }
    return this.replyEntry(slot, unique, parentIno, st);
  }

  /** EACCES unless the caller may add a name to the directory (may_create). */
  private async requireCreateIn(caller: Caller, parentIno: number): Promise<void> {
    requireCreate(caller, await this.fs.getattr(parentIno));
  }

  /** EACCES (or EPERM, sticky) unless the caller may remove the name from the directory (may_delete). */
  private async requireDeleteIn(caller: Caller, parentIno: number, name: string): Promise<void> {
    const parent = await this.fs.getattr(parentIno);
    requireDelete(caller, parent, isSticky(parent) ? await this.fs.lookup(parentIno, name) : null);
  }

  private async handle(slot: Slot, opcode: number, unique: bigint, lengthBytes: number): Promise<void> {
    const req = slot.request;
    const nodeIno = this.ino(Number(req.readBigUInt64LE(16)));
    const caller = new Caller(req.readUInt32LE(24), req.readUInt32LE(28), req.readUInt32LE(32));
    const { uid, gid } = caller; // new nodes are the caller's
    const body = IN_HEADER_SIZE_BYTES;
    const fs = this.fs;
    switch (opcode) {
      case Opcode.init:
        return this.init(slot, unique);
      case Opcode.destroy:
        return this.send(slot, unique, 0, 0);
      case Opcode.lookup:
        return this.lookup(slot, unique, caller, nodeIno, readName(req, body, lengthBytes).name);
      case Opcode.getattr:
        return this.replyAttr(slot, unique, await fs.getattr(nodeIno));
      case Opcode.setattr:
        return this.replyAttr(slot, unique, await this.setattr(caller, nodeIno, req, body));
      case Opcode.readlink: {
        const target = await fs.readlink(nodeIno);
        return this.send(slot, unique, 0, slot.reply.write(target, OUT_HEADER_SIZE_BYTES, 'utf8'));
      }
      case Opcode.symlink: {
        this.refuseIfReadonly();
        const name = readName(req, body, lengthBytes);
        const target = readName(req, name.next, lengthBytes).name;
        await this.requireCreateIn(caller, nodeIno);
        return this.replyEntry(slot, unique, nodeIno, await fs.symlink(nodeIno, name.name, target, { uid, gid }));
      }
      case Opcode.mknod: {
        this.refuseIfReadonly();
        const mode = req.readUInt32LE(body);
        // Only regular files exist in Cairn; fifos, sockets and devices are refused as on most file systems.
        if ((mode & S_IFMT) !== S_IFREG) throw new ErrnoReply(E.EPERM);
        const name = readName(req, body + 16, lengthBytes).name;
        await this.requireCreateIn(caller, nodeIno);
        return this.replyEntry(slot, unique, nodeIno, await fs.create(nodeIno, name, { mode: mode & S_IPERM, uid, gid }));
      }
      case Opcode.mkdir: {
        this.refuseIfReadonly();
        const mode = req.readUInt32LE(body);
        const name = readName(req, body + 8, lengthBytes).name;
        await this.requireCreateIn(caller, nodeIno);
        return this.replyEntry(slot, unique, nodeIno, await fs.mkdir(nodeIno, name, { mode: mode & S_IPERM, uid, gid }));
      }
      case Opcode.unlink: {
        this.refuseIfReadonly();
        const name = readName(req, body, lengthBytes).name;
        await this.requireDeleteIn(caller, nodeIno, name);
        await fs.unlink(nodeIno, name);
        return this.send(slot, unique, 0, 0);
      }
      case Opcode.rmdir: {
        this.refuseIfReadonly();
        const name = readName(req, body, lengthBytes).name;
        await this.requireDeleteIn(caller, nodeIno, name);
        await fs.rmdir(nodeIno, name);
        return this.send(slot, unique, 0, 0);
      }
      case Opcode.rename:
      case Opcode.rename2: {
        this.refuseIfReadonly();
        const newParentIno = this.ino(Number(req.readBigUInt64LE(body)));
        const flags = opcode === Opcode.rename2 ? req.readUInt32LE(body + 8) : 0;
        const names = body + (opcode === Opcode.rename2 ? 16 : 8);
        const oldName = readName(req, names, lengthBytes);
        const newName = readName(req, oldName.next, lengthBytes).name;
        await this.rename(caller, nodeIno, oldName.name, newParentIno, newName, flags);
        // The kernel moves its dentry keeping the timeout it had under the old directory: under a new
        // one that all may search, a later chmod must know to forget it; under any other, forget it now.
        const newParent = await fs.getattr(newParentIno);
        if (searchableByAll(newParent)) this.namesCachedUnder.add(newParentIno);
        this.send(slot, unique, 0, 0);
        if (!searchableByAll(newParent)) void this.invalidate({ kind: 'entry', parentIno: newParentIno, name: newName });
        return;
      }
      case Opcode.link: {
        this.refuseIfReadonly();
        const targetIno = this.ino(Number(req.readBigUInt64LE(body)));
        const name = readName(req, body + 8, lengthBytes).name;
        // Linux's order: may_linkat (EPERM) before the directory's check (EACCES)
        requireLinkSource(caller, await fs.getattr(targetIno), this.protectedHardlinks);
        await this.requireCreateIn(caller, nodeIno);
        return this.replyEntry(slot, unique, nodeIno, await fs.link(targetIno, nodeIno, name));
      }
      case Opcode.open: {
        const flags = req.readUInt32LE(body);
        if ((flags & O_ACCMODE) !== O_RDONLY || flags & O_TRUNC) {
          this.refuseIfReadonly();
          if (this.snapshotNamespace?.isReadonlyIno(nodeIno)) throw new ErrnoReply(E.EROFS);
        }
        requireAccess(caller, await fs.getattr(nodeIno), openMask(flags));
        const fh = await this.openFile(nodeIno);
        return this.replyOpen(slot, unique, fh, this.snapshotNamespace?.isReadonlyIno(nodeIno) ? SNAPSHOT_FILE_OPEN_FLAGS : LIVE_FILE_OPEN_FLAGS);
      }
      case Opcode.create:
        return this.create(slot, unique, caller, nodeIno, lengthBytes);
      case Opcode.read:
        return this.read(slot, unique, req, body);
      case Opcode.write: {
        this.refuseIfReadonly();
        const ino = this.handleIno(req.readBigUInt64LE(body), nodeIno);
        const offset = Number(req.readBigUInt64LE(body + 8));
        const sizeBytes = req.readUInt32LE(body + 16);
        if (req.readUInt32LE(body + 20) & FUSE_WRITE_KILL_SUIDGID) await this.killSuidSgid(ino);
        const dataAt = body + WRITE_IN_SIZE_BYTES;
        const written = await fs.write(ino, offset, req.subarray(dataAt, dataAt + sizeBytes));
        slot.reply.writeUInt32LE(written, OUT_HEADER_SIZE_BYTES);
        slot.reply.writeUInt32LE(0, OUT_HEADER_SIZE_BYTES + 4);
        return this.send(slot, unique, 0, 8);
      }
      case Opcode.statfs:
        return this.statfs(slot, unique);
      case Opcode.release:
        await this.release(req.readBigUInt64LE(body));
        return this.send(slot, unique, 0, 0);
      case Opcode.fsync:
      case Opcode.fsyncdir:
        // fsync and fdatasync both mean "durable now": the pool has no cheaper data-only commit.
        if (!this.opts.readonly) await this.opts.onSync?.();
        return this.send(slot, unique, 0, 0);
      case Opcode.opendir: {
        requireAccess(caller, await fs.getattr(nodeIno), MAY_READ);
        const fh = this.nextHandle++;
        this.dirs.set(fh, { ino: nodeIno, pageStart: 2, entries: [], nextCursor: 0n });
        // A live directory's listing may stay in the kernel (its changes come through the mount, or are
        // invalidated); `.cairn` and snapshots' are asked for each time.
        const live = this.snapshotNamespace?.isReadonlyIno(nodeIno) !== true;
        return this.replyOpen(slot, unique, fh, live ? FopenFlag.keepCache | FopenFlag.cacheDir : 0);
      }
      case Opcode.readdir:
        return this.readdir(slot, unique, req, body, nodeIno, false);
      case Opcode.readdirplus:
        return this.readdir(slot, unique, req, body, nodeIno, true);
      case Opcode.access:
        return this.access(slot, unique, caller, nodeIno, req.readUInt32LE(body));
      case Opcode.releasedir:
        this.dirs.delete(Number(req.readBigUInt64LE(body)));
        return this.send(slot, unique, 0, 0);
      case Opcode.getxattr:
      case Opcode.listxattr:
      case Opcode.setxattr:
      case Opcode.removexattr:
        return this.xattrOp(slot, unique, caller, opcode, nodeIno, lengthBytes);
      default:
        // locks (kept by the kernel), fallocate,
        // lseek, copy_file_range, ioctl, poll: ENOSYS makes the kernel fall back or stop asking.
        throw new ErrnoReply(E.ENOSYS);
    }
  }

  private init(slot: Slot, unique: bigint): void {
    const req = slot.request;
    const body = IN_HEADER_SIZE_BYTES;
    const major = req.readUInt32LE(body);
    const minor = req.readUInt32LE(body + 4);
    const maxReadahead = req.readUInt32LE(body + 8);
    const kernelFlags = req.readUInt32LE(body + 12);
    if (major !== FUSE_KERNEL_VERSION || minor < FUSE_MINOR_VERSION_MIN) {
      this.rejectInitialized(new CairnError('ENOTSUP', `kernel FUSE ${major}.${minor}; Cairn needs 7.${FUSE_MINOR_VERSION_MIN} or later`));
      throw new ErrnoReply(E.EINVAL);
    }
    // READDIRPLUS (auto: when the kernel sees the names being looked up, as `ls -l` does) answers a
    // listing's stats with the names, instead of one LOOKUP per name.
    const wanted =
      InitFlag.asyncRead |
      InitFlag.bigWrites |
      InitFlag.autoInvalData |
      InitFlag.doReaddirplus |
      InitFlag.readdirplusAuto |
      InitFlag.parallelDirops |
      InitFlag.maxPages |
      InitFlag.cacheSymlinks |
      InitFlag.handleKillprivV2;
    const out = slot.reply;
    const at = OUT_HEADER_SIZE_BYTES;
    out.fill(0, at, at + INIT_OUT_SIZE_BYTES);
    out.writeUInt32LE(FUSE_KERNEL_VERSION, at);
    out.writeUInt32LE(Math.min(minor, FUSE_MINOR_VERSION_SPOKEN), at + 4);
    out.writeUInt32LE(maxReadahead, at + 8);
    out.writeUInt32LE((kernelFlags & wanted) >>> 0, at + 12);
    out.writeUInt16LE(REQUESTS_IN_FLIGHT_MAX * 2, at + 16); // max_background
    out.writeUInt16LE(REQUESTS_IN_FLIGHT_MAX + REQUESTS_IN_FLIGHT_MAX / 2, at + 18); // congestion_threshold
    out.writeUInt32LE(MAX_WRITE_BYTES, at + 20);
    out.writeUInt32LE(1, at + 24); // time_gran: timestamps are kept to the nanosecond
    out.writeUInt16LE(MAX_WRITE_BYTES / PAGE_SIZE_BYTES, at + 28); // max_pages
    this.send(slot, unique, 0, INIT_OUT_SIZE_BYTES);
    this.resolveInitialized();
  }

  private async setattr(caller: Caller, ino: number, req: Buffer, body: number): Promise<Stat> {
    const valid = req.readUInt32LE(body);
    const attr: SetAttr = {};
    const before = await this.fs.getattr(ino);
    if (valid & SetattrValid.uid) attr.uid = req.readUInt32LE(body + 76);
    if (valid & SetattrValid.gid) attr.gid = req.readUInt32LE(body + 80);
    if (valid & SetattrValid.size) attr.sizeBytes = Number(req.readBigUInt64LE(body + 16));
    if (valid & SetattrValid.atimeNow) attr.atimeNs = nowNs();
    else if (valid & SetattrValid.atime) attr.atimeNs = req.readBigInt64LE(body + 32) * 1_000_000_000n + BigInt(req.readUInt32LE(body + 56));
    if (valid & SetattrValid.mtimeNow) attr.mtimeNs = nowNs();
    else if (valid & SetattrValid.mtime) attr.mtimeNs = req.readBigInt64LE(body + 40) * 1_000_000_000n + BigInt(req.readUInt32LE(body + 60));
    // utimensat with both times now is a "touch" (owner or writer); given times, or one now and the
    // other left alone, need the owner (vfs_utimes). A truncate's own mtime (now) is part of the truncate.
    const bothNow = (valid & (SetattrValid.atimeNow | SetattrValid.mtimeNow)) === (SetattrValid.atimeNow | SetattrValid.mtimeNow);
    const anyTime = (valid & (SetattrValid.atime | SetattrValid.mtime)) !== 0;
    const timesGiven =
      (valid & SetattrValid.atime && !(valid & SetattrValid.atimeNow)) ||
      (valid & SetattrValid.mtime && !(valid & SetattrValid.mtimeNow)) ||
      (attr.sizeBytes === undefined && anyTime && !bothNow);
    const mode = checkSetattr(caller, before, {
      ...(valid & SetattrValid.mode ? { mode: req.readUInt32LE(body + 68) & S_IPERM } : {}),
      ...(attr.uid !== undefined ? { uid: attr.uid } : {}),
      ...(attr.gid !== undefined ? { gid: attr.gid } : {}),
      // a truncate through an open file was checked at open
      sizeByPath: attr.sizeBytes !== undefined && !(valid & SetattrValid.fh),
      timesGiven: Boolean(timesGiven),
      timesNow: attr.sizeBytes === undefined && bothNow,
    });
    if (mode !== undefined) attr.mode = mode;
    else if (valid & SetattrValid.killSuidgid) {
      const killed = modeAfterKillingSuidSgid(before.mode);
      if (killed !== undefined) attr.mode = killed;
    }
    if (Object.keys(attr).length === 0) return before;
    this.refuseIfReadonly();
    const after = await this.fs.setattr(ino, attr);
    if (after.kind === 'directory' && !searchableByAll(after)) this.forgetNamesUnder(ino);
    return after;
  }

  /** ACCESS (access(2), chdir): mask is R_OK | W_OK | X_OK, as MAY_READ | MAY_WRITE | MAY_EXEC; 0 asks only whether it exists. */
  private async access(slot: Slot, unique: bigint, caller: Caller, ino: number, mask: number): Promise<void> {
    const st = await this.fs.getattr(ino);
    if (mask & MAY_WRITE && this.snapshotNamespace?.isReadonlyIno(ino)) throw new ErrnoReply(E.EROFS);
    requireAccess(caller, st, mask & (MAY_READ | MAY_WRITE | MAY_EXEC));
    this.send(slot, unique, 0, 0);
  }

  /**
   * The file system tracks opens (retain/release), so an unlinked open file stays usable with nlink 0
   * and is freed at its last release. ENOENT when the inode is gone.
   */
  private async openFile(ino: number): Promise<number> {
    if (this.fs.retain) await this.fs.retain(ino);
    else await this.fs.getattr(ino);
    const fh = this.nextHandle++;
    this.files.set(fh, { ino });
    return fh;
  }

  private replyOpen(slot: Slot, unique: bigint, fh: number, openFlags = 0): void {
    const at = OUT_HEADER_SIZE_BYTES;
    slot.reply.writeBigUInt64LE(BigInt(fh), at);
    slot.reply.writeUInt32LE(openFlags, at + 8);
    slot.reply.writeUInt32LE(0, at + 12);
    this.send(slot, unique, 0, OPEN_OUT_SIZE_BYTES);
  }

  private handleIno(fh: bigint, fallbackIno: number): number {
    return this.files.get(Number(fh))?.ino ?? fallbackIno;
  }

  private async create(slot: Slot, unique: bigint, caller: Caller, parentIno: number, lengthBytes: number): Promise<void> {
    this.refuseIfReadonly();
    const req = slot.request;
    const body = IN_HEADER_SIZE_BYTES;
    const flags = req.readUInt32LE(body);
    const mode = req.readUInt32LE(body + 4);
    const name = readName(req, body + 16, lengthBytes).name;
    const before = await this.fs.getattr(parentIno);
    requireAccess(caller, before, MAY_EXEC);
    const mayCreate = permitted(caller, before, MAY_WRITE | MAY_EXEC);
    const { st, fh } = await (async () => {
      let created: Stat;
      try {
        if (!mayCreate) throw new ErrnoReply(E.EACCES);
        created = await this.fs.create(parentIno, name, { mode: mode & S_IPERM, uid: caller.uid, gid: caller.gid });
      } catch (e) {
        // The kernel looks the name up first, so this is a race with another creator: honour O_EXCL,
        // otherwise open what is there as open(2) would (which needs no write permission on the
        // directory; when nothing is there, the EACCES stands).
        const refused = e instanceof ErrnoReply && !mayCreate;
        if ((!isCairnError(e, 'EEXIST') && !refused) || flags & O_EXCL) throw e;
        created = await this.fs.lookup(parentIno, name).catch((lookupError: unknown) => {
          throw refused && isCairnError(lookupError, 'ENOENT') ? e : lookupError;
        });
        if (created.kind === 'directory') throw new ErrnoReply(E.EISDIR);
        requireAccess(caller, created, openMask(flags));
        if (flags & O_TRUNC) {
          const killed = req.readUInt32LE(body + 12) & FUSE_OPEN_KILL_SUIDGID ? modeAfterKillingSuidSgid(created.mode) : undefined;
          if (created.sizeBytes > 0 || killed !== undefined) created = await this.fs.setattr(created.ino, killed === undefined ? { sizeBytes: 0 } : { sizeBytes: 0, mode: killed });
        }
      }
      return { st: created, fh: await this.openFile(created.ino) };
    })();
    const parent = await this.fs.getattr(parentIno); // read again: see replyEntry
    const out = slot.reply;
    this.putEntry(out, OUT_HEADER_SIZE_BYTES, parent, st);
    const at = OUT_HEADER_SIZE_BYTES + ENTRY_OUT_SIZE_BYTES;
    out.writeBigUInt64LE(BigInt(fh), at);
    out.writeUInt32LE(LIVE_FILE_OPEN_FLAGS, at + 8); // created: never in a snapshot
    out.writeUInt32LE(0, at + 12);
    this.send(slot, unique, 0, ENTRY_OUT_SIZE_BYTES + OPEN_OUT_SIZE_BYTES);
  }

  private async read(slot: Slot, unique: bigint, req: Buffer, body: number): Promise<void> {
    const ino = this.handleIno(req.readBigUInt64LE(body), this.ino(Number(req.readBigUInt64LE(16))));
    const offset = Number(req.readBigUInt64LE(body + 8));
    const sizeBytes = Math.min(req.readUInt32LE(body + 16), SLOT_SIZE_BYTES - OUT_HEADER_SIZE_BYTES);
    const target = slot.reply.subarray(OUT_HEADER_SIZE_BYTES, OUT_HEADER_SIZE_BYTES + sizeBytes);
    const readBytes = await this.fs.readInto(ino, offset, target);
    this.send(slot, unique, 0, readBytes);
  }

  /**
   * Before a write the kernel marked FUSE_WRITE_KILL_SUIDGID (HANDLE_KILLPRIV_V2): what Linux's
   * file_remove_privs does, here, where the mode is known without a round trip.
   */
  private async killSuidSgid(ino: number): Promise<void> {
    const killed = modeAfterKillingSuidSgid((await this.fs.getattr(ino)).mode);
    if (killed !== undefined) await this.fs.setattr(ino, { mode: killed });
  }

  private async release(fh: bigint): Promise<void> {
    const handle = this.files.get(Number(fh));
    if (!handle) return;
    this.files.delete(Number(fh));
    try {
      await this.fs.release?.(handle.ino);
    } catch (e) {
      this.opts.onError?.(e, Opcode.release);
    }
  }

  /**
   * RENAME, checked as Linux's vfs_rename: the name may leave its directory and enter the new one (or
   * replace what is there), and a directory moving to another parent must be writable itself (its
   * ".." changes).
   */
  private async rename(caller: Caller, parentIno: number, name: string, newParentIno: number, newName: string, flags: number): Promise<void> {
    if (flags & ~RENAME_NOREPLACE) throw new ErrnoReply(E.EINVAL); // RENAME_EXCHANGE, RENAME_WHITEOUT
    const parent = await this.fs.getattr(parentIno);
    const newParent = newParentIno === parentIno ? parent : await this.fs.getattr(newParentIno);
    const moving = isSticky(parent) || newParentIno !== parentIno ? await this.fs.lookup(parentIno, name) : null;
    requireDelete(caller, parent, moving);
    const replaced = isSticky(newParent) ? await this.fs.lookup(newParentIno, newName).catch(() => null) : null;
    requireDelete(caller, newParent, replaced);
    if (moving?.kind === 'directory' && newParentIno !== parentIno) requireAccess(caller, moving, MAY_WRITE);
    if (flags & RENAME_NOREPLACE) {
      const exists = await this.fs.lookup(newParentIno, newName).then(
        () => true,
        (e: unknown) => {
          if (isCairnError(e, 'ENOENT')) return false;
          throw e;
        },
      );
      if (exists) throw new ErrnoReply(E.EEXIST);
    }
    await this.fs.rename(parentIno, name, newParentIno, newName);
  }

  private async statfs(slot: Slot, unique: bigint): Promise<void> {
    const s = await this.fs.statfs();
    const out = slot.reply;
    const at = OUT_HEADER_SIZE_BYTES;
    const blockBytes = PAGE_SIZE_BYTES;
    // Cairn has no inode table to run out of: report free inodes as what the free space could hold.
    const filesFree = Math.floor(s.availableBytes / 512);
    out.fill(0, at, at + STATFS_OUT_SIZE_BYTES);
    out.writeBigUInt64LE(BigInt(Math.floor(s.totalBytes / blockBytes)), at);
    out.writeBigUInt64LE(BigInt(Math.floor(s.freeBytes / blockBytes)), at + 8);
    out.writeBigUInt64LE(BigInt(Math.floor(s.availableBytes / blockBytes)), at + 16);
    out.writeBigUInt64LE(BigInt(s.files + filesFree), at + 24);
    out.writeBigUInt64LE(BigInt(filesFree), at + 32);
    out.writeUInt32LE(blockBytes, at + 40); // bsize
    out.writeUInt32LE(255, at + 44); // namelen
    out.writeUInt32LE(blockBytes, at + 48); // frsize
    this.send(slot, unique, 0, STATFS_OUT_SIZE_BYTES);
  }

  /**
   * READDIR, or READDIRPLUS (plus): each name then comes with its entry (node id and attributes), as a
   * LOOKUP would answer, so `ls -l` costs a request per page instead of one per name.
   */
  private async readdir(slot: Slot, unique: bigint, req: Buffer, body: number, ino: number, plus: boolean): Promise<void> {
    let dir = this.dirs.get(Number(req.readBigUInt64LE(body)));
    if (!dir) dir = { ino, pageStart: 2, entries: [], nextCursor: 0n }; // no opendir handle: one-off listing
    let position = Number(req.readBigUInt64LE(body + 8));
    const listed = plus ? await this.fs.getattr(dir.ino) : null;
    const sizeBytes = Math.min(req.readUInt32LE(body + 16), SLOT_SIZE_BYTES - OUT_HEADER_SIZE_BYTES);
    const out = slot.reply;
    const end = OUT_HEADER_SIZE_BYTES + sizeBytes;
    let at = OUT_HEADER_SIZE_BYTES;
    while (position < 2) {
      const name = position === 0 ? '.' : '..';
      const size = plus ? direntPlusSizeBytes(name.length) : direntSizeBytes(name.length);
      if (at + size > end) return this.send(slot, unique, 0, at - OUT_HEADER_SIZE_BYTES);
      if (plus) {
        // the kernel takes no entry for "." and "..": node id 0 says so
        out.fill(0, at, at + ENTRY_OUT_SIZE_BYTES);
        at += ENTRY_OUT_SIZE_BYTES;
      }
      this.putDirent(out, at, dir.ino, position + 1, DT_DIR, name, direntSizeBytes(name.length));
      at += direntSizeBytes(name.length);
      position++;
    }
    if (position < dir.pageStart) {
      // seekdir backwards past the page we hold: list again from the start (positions are stream indexes)
      dir.pageStart = 2;
      dir.entries = [];
      dir.nextCursor = 0n;
    }
    // One reply comes from one page, so the kernel backing up inside a reply stays inside the page we hold.
    while (position >= dir.pageStart + dir.entries.length && dir.nextCursor !== null) {
      const page = await this.fs.readdir(dir.ino, dir.nextCursor, READDIR_PAGE_ENTRIES);
      dir.pageStart += dir.entries.length;
      dir.entries = page.entries;
      dir.nextCursor = page.cursor;
    }
    for (let i = position - dir.pageStart; i < dir.entries.length && i >= 0; i++) {
      const entry = dir.entries[i];
      if (!entry) break;
      const nameBytes = nameByteLength(entry.name);
      const size = direntSizeBytes(nameBytes);
      if (at + (plus ? ENTRY_OUT_SIZE_BYTES : 0) + size > end) break;
      if (plus) {
        let st: Stat;
        try {
          st = await this.fs.getattr(entry.ino);
        } catch (e) {
          // unlinked (or its snapshot destroyed) since the page was read: not listed
          const errno = errnoOf(e);
          if (errno === E.ENOENT || errno === E.ESTALE) continue;
          throw e;
        }
        this.putEntry(out, at, listed!, st);
        at += ENTRY_OUT_SIZE_BYTES;
      }
      this.putDirent(out, at, entry.ino, dir.pageStart + i + 1, direntType(entry.kind), entry.name, size);
      at += size;
    }
    this.send(slot, unique, 0, at - OUT_HEADER_SIZE_BYTES);
  }

  private putDirent(out: Buffer, at: number, ino: number, nextPosition: number, type: number, name: string, size: number): void {
    out.fill(0, at, at + size);
    out.writeBigUInt64LE(BigInt(ino), at);
    out.writeBigUInt64LE(BigInt(nextPosition), at + 8);
    const nameBytes = encodeNameBytes(name).copy(out, at + DIRENT_HEADER_SIZE_BYTES);
    out.writeUInt32LE(nameBytes, at + 16);
    out.writeUInt32LE(type, at + 20);
  }

  private async xattrOp(slot: Slot, unique: bigint, caller: Caller, opcode: number, ino: number, lengthBytes: number): Promise<void> {
    const x = this.xattr;
    if (!x) throw new ErrnoReply(E.EOPNOTSUPP);
    const req = slot.request;
    const body = IN_HEADER_SIZE_BYTES;
    const refuseSecurity = (name: string): string => {
      if (SECURITY_XATTRS_REFUSED.has(name)) throw new ErrnoReply(E.EOPNOTSUPP);
      return name;
    };
    switch (opcode) {
      case Opcode.getxattr: {
        const name = refuseSecurity(readName(req, body + 8, lengthBytes).name);
        requireXattrAccess(caller, await this.fs.getattr(ino), name, MAY_READ);
        return this.replySized(slot, unique, req.readUInt32LE(body), await x.getxattr(ino, name));
      }
      case Opcode.listxattr: {
        const names = (await x.listxattr(ino)).filter((n) => !SECURITY_XATTRS_REFUSED.has(n));
        let totalBytes = 0;
        for (const n of names) totalBytes += Buffer.byteLength(n) + 1;
        const list = Buffer.allocUnsafe(totalBytes);
        let at = 0;
        for (const n of names) {
          at += list.write(n, at, 'utf8');
          list[at++] = 0;
        }
        return this.replySized(slot, unique, req.readUInt32LE(body), list);
      }
      case Opcode.setxattr: {
        this.refuseIfReadonly();
        // fuse_setxattr_in is 8 bytes (size, flags) unless FUSE_SETXATTR_EXT is negotiated, which it is not.
        const valueBytes = req.readUInt32LE(body);
        const flags = req.readUInt32LE(body + 4);
        const name = readName(req, body + 8, lengthBytes);
        refuseSecurity(name.name);
        requireXattrAccess(caller, await this.fs.getattr(ino), name.name, MAY_WRITE);
        const value = Buffer.from(req.subarray(name.next, name.next + valueBytes));
        const xflags: SetXattrFlags = {};
        if (flags & XATTR_CREATE) xflags.create = true;
        if (flags & XATTR_REPLACE) xflags.replace = true;
        await x.setxattr(ino, name.name, value, xflags);
        return this.send(slot, unique, 0, 0);
      }
      default: {
        this.refuseIfReadonly();
        const name = refuseSecurity(readName(req, body, lengthBytes).name);
        requireXattrAccess(caller, await this.fs.getattr(ino), name, MAY_WRITE);
        await x.removexattr(ino, name);
        return this.send(slot, unique, 0, 0);
      }
    }
  }

  /** getxattr/listxattr: size 0 asks for the length; a smaller buffer than the value is ERANGE. */
  private replySized(slot: Slot, unique: bigint, sizeBytes: number, value: Buffer): void {
    const at = OUT_HEADER_SIZE_BYTES;
    if (sizeBytes === 0) {
      slot.reply.writeUInt32LE(value.length, at);
      slot.reply.writeUInt32LE(0, at + 4);
      return this.send(slot, unique, 0, 8);
    }
    if (value.length > sizeBytes || value.length > SLOT_SIZE_BYTES - at) throw new ErrnoReply(E.ERANGE);
    value.copy(slot.reply, at);
    this.send(slot, unique, 0, value.length);
  }
}

/** Runs a tool; resolves on exit 0, rejects with its stderr otherwise. stdio[3] may carry an fd. */
function runTool(command: string, args: string[], passFd?: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'ignore', 'pipe'];
    if (passFd !== undefined) stdio.push(passFd);
    const child = spawn(command, args, { stdio });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      if (stderr.length < TOOL_OUTPUT_MAX_BYTES) stderr += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(' ')}: exit ${code}: ${stderr.trim()}`));
    });
  });
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CairnError('EIO', `${what}: no answer in ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function openDevice(): Promise<number> {
  return new Promise((resolve, reject) => {
    nodeFs.open(FUSE_DEVICE_PATH, 'r+', (err, fd) => (err ? reject(err) : resolve(fd)));
  });
}

function closeDevice(fd: number): Promise<void> {
  return new Promise((resolve) => nodeFs.close(fd, () => resolve()));
}

/** Whether FUSE mounts can be made here: /dev/fuse opens and we may call mount(2) (root). */
export function fuseAvailable(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: 'FUSE mounts need Linux' };
  if (!nodeFs.existsSync(FUSE_DEVICE_PATH)) return { ok: false, reason: `${FUSE_DEVICE_PATH} does not exist` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'mounting /dev/fuse directly needs root (CAP_SYS_ADMIN)' };
  try {
    nodeFs.closeSync(nodeFs.openSync(FUSE_DEVICE_PATH, 'r+'));
  } catch (e) {
    return { ok: false, reason: `cannot open ${FUSE_DEVICE_PATH}: ${(e as Error).message}` };
  }
  return { ok: true };
}

/**
 * Mounts `fs` at `mountpoint` (an existing directory). The mount point is owned by this process: the
 * process must not touch the mount with synchronous fs calls (it would wait on itself). Resolves once
 * the kernel finished INIT, so the mount is usable.
 */
export async function mountFilesystem(fs: FileSystemApi, mountpoint: string, opts: MountOptions = {}): Promise<FuseMount> {
  const available = fuseAvailable();
  if (!available.ok) throw new CairnError('ENOTSUP', available.reason);
  const st = await nodeFs.promises.stat(mountpoint);
  if (!st.isDirectory()) throw new CairnError('ENOTDIR', `mount point ${mountpoint} is not a directory`);
  const served = opts.snapshots
    ? new SnapshotNamespace(fs, opts.snapshots, { snapdir: opts.snapdir ?? 'hidden', listCacheMs: SNAPSHOT_CACHE_VALID_SECONDS * 1000 })
    : fs;
  const fd = await openDevice();
  const session = new FuseSession(fd, served, opts);
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const options = [
    'fd=3', // the child's fd 3 is our /dev/fuse: mount(2) binds the open file, which we share
    'rootmode=40000',
    `user_id=${uid}`,
    `group_id=${gid}`,
    // no default_permissions: the server checks (permissions.ts)
    `max_read=${MAX_WRITE_BYTES}`,
    'nosuid',
    'nodev',
  ];
  if (opts.allowOther ?? true) options.push('allow_other');
  if (opts.readonly) options.push('ro');
  try {
    // -i: do not run /sbin/mount.fuse, which would try to start a libfuse program.
    await runTool('mount', ['-i', '-t', 'fuse.cairn', '-o', options.join(','), opts.name ?? 'cairn', mountpoint], fd);
  } catch (e) {
    await closeDevice(fd);
    throw new CairnError('EIO', `mount ${mountpoint} failed: ${(e as Error).message}`);
  }
  const connectionId = await fuseConnectionId(mountpoint).catch(() => null);
  session.start();
  try {
    await withTimeout(session.initialized, INIT_TIMEOUT_MS, `FUSE INIT on ${mountpoint}`);
  } catch (e) {
    await lazyUnmount(mountpoint).catch(() => undefined);
    await withTimeout(session.waitDrained(), DRAIN_TIMEOUT_MS, 'FUSE drain').catch(() => undefined);
    await closeDevice(fd);
    throw e;
  }
  // Only after INIT: the kernel lowers the read-ahead to INIT's max_readahead, which it asked for
  // (128 KiB) before this could raise it. A tuning: without sysfs, the default.
  if (connectionId !== null) await setReadAhead(connectionId).catch(() => undefined);
  let unmounting: Promise<void> | null = null;
  let closed = false;
  const closeOnce = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await closeDevice(fd);
  };
  return {
    mountpoint,
    get replyStats() {
      return session.replyStats;
    },
    invalidate: (change) => session.invalidate(change),
    async abort(): Promise<void> {
      await lazyUnmount(mountpoint).catch(() => undefined);
      if (connectionId !== null) await abortConnection(connectionId).catch(() => undefined);
      await withTimeout(session.waitDrained(), DRAIN_TIMEOUT_MS, 'FUSE drain').catch(() => undefined);
      await closeOnce();
    },
    unmount(): Promise<void> {
      unmounting ??= (async () => {
        if (!session.isEnded) {
          try {
            await runTool('fusermount', ['-u', mountpoint]);
          } catch (e) {
            try {
              await runTool('umount', [mountpoint]);
            } catch {
              unmounting = null;
              throw new CairnError('EBUSY', `unmount ${mountpoint} failed: ${(e as Error).message}`);
            }
          }
        }
        await withTimeout(session.waitDrained(), DRAIN_TIMEOUT_MS, `FUSE drain of ${mountpoint}`);
        await closeOnce();
      })();
      return unmounting;
    },
  };
}

const FUSECTL_PATH = '/sys/fs/fuse/connections';

/** The fusectl id of the FUSE connection mounted at `mountpoint`: the minor of its st_dev, from mountinfo. */
async function fuseConnectionId(mountpoint: string): Promise<number | null> {
  const real = await nodeFs.promises.realpath(mountpoint).catch(() => mountpoint);
  const info = await nodeFs.promises.readFile('/proc/self/mountinfo', 'utf8');
  let id: number | null = null;
  for (const line of info.split('\n')) {
    const fields = line.split(' ');
    if (fields[4] !== real) continue;
    const dash = fields.indexOf('-');
    if (!fields[dash + 1]?.startsWith('fuse')) continue;
    const minor = Number(fields[2]?.split(':')[1]);
    if (Number.isInteger(minor)) id = minor; // the last one is the top of a stack of mounts
  }
  return id;
}

/** Sets the read-ahead of the connection's bdi (/sys/class/bdi/0:<id>), which only root may change. */
async function setReadAhead(connectionId: number): Promise<void> {
  await nodeFs.promises.writeFile(`/sys/class/bdi/0:${connectionId}/read_ahead_kb`, String(READ_AHEAD_KB));
}

async function abortConnection(connectionId: number): Promise<void> {
  if (!nodeFs.existsSync(`${FUSECTL_PATH}/${connectionId}`)) {
    await runTool('mount', ['-t', 'fusectl', 'none', FUSECTL_PATH]).catch(() => undefined);
  }
  await nodeFs.promises.writeFile(`${FUSECTL_PATH}/${connectionId}/abort`, '1');
}

async function lazyUnmount(path: string): Promise<void> {
  try {
    await runTool('fusermount', ['-uz', path]);
  } catch {
    await runTool('umount', ['-l', path]);
  }
}

/**
 * Lazily unmounts a dead FUSE mount at `path` (its daemon died: stat fails with ENOTCONN, "Transport
 * endpoint is not connected"). Returns whether it unmounted something; a live mount or a plain
 * directory is left alone.
 */
export async function cleanupStaleMount(path: string): Promise<boolean> {
  try {
    await nodeFs.promises.stat(path);
    return false;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOTCONN' && code !== 'ECONNABORTED') return false;
  }
  await lazyUnmount(path);
  return true;
}
