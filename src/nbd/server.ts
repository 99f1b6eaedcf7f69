/**
 * The NBD server: fixed-newstyle handshake, option haggling, then a pipelined transmission phase per
 * connection. See index.ts for the theory; protocol.ts for the wire format.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { assert } from '../util/assert.js';
import {
  NBD_CLIENT_FLAGS_KNOWN,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EPERM,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_IHAVEOPT,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_PAYLOAD_BYTES_MAX,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_SERVER,
  NBD_REQUEST_MAGIC,
  NBD_STRING_BYTES_MAX,
  OPTION_HEADER_BYTES,
  REQUEST_HEADER_BYTES,
  RequestHeader,
  decodeInfoRequest,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeOptionReply,
  encodeServerEntry,
  encodeSimpleReplyHeader,
  nbdErrorFor,
} from './protocol.js';
import { ConnectionClosedError, SocketReader } from './reader.js';

/**
 * What the NBD server serves: a byte range with block-device operations. The volume layer (zvols)
 * implements it; tests implement it over a plain file.
 *
 * Contract: operations may run concurrently (the server orders overlapping mutations itself); a write
 * that has resolved is visible to every later read on any connection; flush() makes every write that
 * resolved before flush() was called durable, whichever connection issued it (this is what lets the
 * server advertise CAN_MULTI_CONN). Failures are CairnErrors (or node errors with a code), translated
 * to NBD errnos; anything else becomes EIO.
 */
export interface BlockExport {
  readonly name: string;
  readonly description?: string;
  sizeBytes(): number;
  /** Preferred I/O size, a power of two; clients align to it for efficiency, not correctness. */
  readonly blockSizeBytes: number;
  readonly readonly: boolean;
  /** Returns exactly length bytes. */
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer): Promise<void>;
  /** Durable on return. */
  flush(): Promise<void>;
  /** The range may read back as anything afterwards (zeroes, in practice). */
  trim(offset: number, length: number): Promise<void>;
  /** The range reads back as zeroes; mayPunch allows deallocating it instead of writing zeroes. */
  writeZeroes(offset: number, length: number, mayPunch: boolean): Promise<void>;
}

/** A catalogue of exports consulted at every option, so exports can come and go while serving. */
export interface ExportCatalog {
  lookup(name: string): BlockExport | undefined;
  list(): Iterable<BlockExport>;
}

export type ExportSource = ReadonlyMap<string, BlockExport> | (() => ReadonlyMap<string, BlockExport>) | ExportCatalog;

export interface NbdServerOptions {
  exports: ExportSource;
  /** Export served to a client that asks for the empty name (the spec's "default export"). */
  defaultExportName?: string;
  log?: (line: string) => void;
  /** Payload bytes of requests admitted but not yet answered, per connection; reading stops above it. */
  inFlightBytesMax?: number;
  /** Requests admitted but not yet answered, per connection. */
  inFlightRequestsMax?: number;
  /** A client that has not finished the handshake by then is dropped. */
  handshakeTimeoutMs?: number;
  /** How long close() lets in-flight requests finish before dropping connections. */
  closeGraceMs?: number;
  /** Connections served at once; more are refused at accept, so total memory is bounded too. */
  connectionsMax?: number;
}

export type NbdListenOptions = { host: string; port: number } | { path: string };
export type NbdAddress = { host: string; port: number } | { path: string };

const IN_FLIGHT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
const IN_FLIGHT_REQUESTS_MAX_DEFAULT = 512;
const HANDSHAKE_TIMEOUT_MS_DEFAULT = 30_000;
const CLOSE_GRACE_MS_DEFAULT = 5_000;
const CONNECTIONS_MAX_DEFAULT = 64;
const READ_AHEAD_BYTES = 256 * 1024;
/** Longest option payload we buffer: NBD_OPT_GO with a maximal name and a generous info list. */
const OPTION_DATA_BYTES_MAX = NBD_STRING_BYTES_MAX + 1024;
/** Options per handshake; a client haggling longer than this is broken or hostile. */
const OPTIONS_PER_HANDSHAKE_MAX = 1024;
const BLOCK_SIZE_PREFERRED_DEFAULT = 4096;
/** Most bytes one step of streaming a payload (in, or skipped) waits for. */
const STREAM_STEP_BYTES = 64 * 1024;

export class NbdServer {
  private readonly exportSource: ExportSource;
  private readonly defaultExportName: string | undefined;
  private readonly logLine: (line: string) => void;
  readonly limits: NbdLimits;
  private server: Server | undefined;
  private readonly connections = new Set<NbdConnection>();
  private closing = false;

  constructor(options: NbdServerOptions) {
    this.exportSource = options.exports;
    this.defaultExportName = options.defaultExportName;
    this.logLine = options.log ?? (() => {});
    this.limits = {
      inFlightBytesMax: options.inFlightBytesMax ?? IN_FLIGHT_BYTES_MAX_DEFAULT,
      inFlightRequestsMax: options.inFlightRequestsMax ?? IN_FLIGHT_REQUESTS_MAX_DEFAULT,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS_DEFAULT,
      closeGraceMs: options.closeGraceMs ?? CLOSE_GRACE_MS_DEFAULT,
      connectionsMax: options.connectionsMax ?? CONNECTIONS_MAX_DEFAULT,
    };
    assert(this.limits.inFlightBytesMax > 0 && this.limits.inFlightRequestsMax > 0, 'in-flight limits must be positive');
  }

  /** Starts accepting clients on TCP ({ host, port }, port 0 for an ephemeral one) or a Unix socket ({ path }). */
  async listen(where: NbdListenOptions): Promise<NbdAddress> {
    assert(this.server === undefined, 'NbdServer.listen called twice');
    const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    server.maxConnections = this.limits.connectionsMax;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => {
        this.server = undefined;
        reject(error);
      });
      const onListening = (): void => {
        server.removeAllListeners('error');
        resolve();
      };
      if ('path' in where) server.listen(where.path, onListening);
      else server.listen(where.port, where.host, onListening);
    });
    server.on('error', (error) => this.logLine(`nbd: server error: ${error.message}`));
    const address = server.address();
    if (typeof address === 'string') return { path: address };
    assert(address !== null, 'listening server has an address');
    const info: AddressInfo = address;
    return { host: info.address, port: info.port };
  }

  /**
   * Stops accepting, lets each connection's in-flight requests finish and their replies go out (up to
   * closeGraceMs), then closes every connection. Resolves when all are closed.
   */
  async close(): Promise<void> {
    this.closing = true;
    const server = this.server;
    const serverClosed =
      server === undefined ? Promise.resolve() : new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.all([...this.connections].map((connection) => connection.shutdown()));
    await serverClosed;
  }

  /**
   * Ends every connection serving exportName the way close() ends them all (stop reading, let running
   * requests finish and their replies flush within closeGraceMs, then close), while the listener and
   * the other exports' connections keep going. The export is matched by its own name, so a client that
   * asked for the default export is included. Remove the export from the catalogue first: a client may
   * reconnect at once, and only the catalogue turns it away.
   */
  async disconnect(exportName: string): Promise<void> {
    const ending: Promise<void>[] = [];
    for (const connection of this.connections) {
      if (connection.exportName === exportName) ending.push(connection.shutdown());
    }
    await Promise.all(ending);
  }

  get isClosing(): boolean {
    return this.closing;
  }

  log(line: string): void {
    this.logLine(line);
  }

  /** Resolves a requested name to an export; the empty name means the default export. */
  lookup(name: string): BlockExport | undefined {
    const found = this.lookupExact(name);
    if (found !== undefined || name !== '') return found;
    if (this.defaultExportName !== undefined) return this.lookupExact(this.defaultExportName);
    return undefined;
  }

  listExports(): BlockExport[] {
    const source = this.exportSource;
    if (source instanceof Map) return [...source.values()];
    if (typeof source === 'function') return [...source().values()];
    return [...(source as ExportCatalog).list()];
  }

  private lookupExact(name: string): BlockExport | undefined {
    const source = this.exportSource;
    if (source instanceof Map) return source.get(name);
    if (typeof source === 'function') return source().get(name);
    return (source as ExportCatalog).lookup(name);
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const connection = new NbdConnection(this, socket);
    this.connections.add(connection);
    socket.once('close', () => this.connections.delete(connection));
    connection.run();
  }
}

/** The limits a server applies to each connection (and the connection count), after defaults. */
export interface NbdLimits {
  readonly inFlightBytesMax: number;
  readonly inFlightRequestsMax: number;
  readonly handshakeTimeoutMs: number;
  readonly closeGraceMs: number;
  readonly connectionsMax: number;
}

/** One admitted request, from the moment its header (and payload) is read until its reply is queued. */
class Request {
  /** Settles when a mutation has been applied (or failed); later overlapping mutations wait on it. */
  applied: Promise<void> | undefined;
  markApplied: (() => void) | undefined;

  constructor(
    readonly command: number,
    readonly commandFlags: number,
    readonly handle: Buffer,
    readonly offsetBytes: number,
    readonly lengthBytes: number,
    readonly payload: Buffer | undefined,
    /** Bytes charged against the connection's in-flight budget. */
    readonly chargedBytes: number,
  ) {}

  get endBytes(): number {
    return this.offsetBytes + this.lengthBytes;
  }
}

type Phase = 'handshake' | 'transmission' | 'closed';

class NbdConnection {
  private readonly reader: SocketReader;
  private readonly header = new RequestHeader();
  private readonly headerScratch = Buffer.alloc(REQUEST_HEADER_BYTES);
  private phase: Phase = 'handshake';
  private blockExport: BlockExport | undefined;
  private transmissionFlags = 0;
  private fixedNewstyle = false;
  private noZeroes = false;

  private inFlightBytes = 0;
  private inFlightRequests = 0;
  /** Requests whose export operation is still running (their reply is not queued yet). */
  private runningRequests = 0;
  private wakeLoop: (() => void) | undefined;
  /** Settles when runningRequests next reaches zero; shared by every drain() caller. */
  private drained: Promise<void> | undefined;
  private resolveDrained: (() => void) | undefined;
  /** Mutations (write, trim, write-zeroes) not yet applied, in arrival order. */
  private readonly pendingMutations: Request[] = [];
  /** Charges of replies queued on the socket, in order; socket write callbacks fire in the same order. */
  private readonly queuedReplyCharges: number[] = [];
  private queuedReplyHead = 0;
  private readonly onReplyFlushed = (): void => this.releaseOldestReply();
  private shuttingDown = false;
  private shutdownDone: Promise<void> | undefined;
  private readonly closed: Promise<void>;

  constructor(
    private readonly server: NbdServer,
    private readonly socket: Socket,
  ) {
    this.reader = new SocketReader(socket, READ_AHEAD_BYTES);
    this.closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', (error) => this.server.log(`nbd: connection error: ${error.message}`));
    socket.once('close', () => {
      this.phase = 'closed';
      this.wake();
    });
  }

  run(): void {
    this.serve().catch((error: unknown) => {
      if (!(error instanceof ConnectionClosedError)) {
        this.server.log(`nbd: connection dropped: ${error instanceof Error ? error.message : String(error)}`);
      }
      this.socket.destroy();
    });
  }

  /** The export this connection chose, once it chose one. */
  get exportName(): string | undefined {
    return this.blockExport?.name;
  }

  /**
   * Server shutdown or disconnect(): stop reading, let running requests finish and replies flush, then
   * close. Idempotent, since close() may come while a disconnect() of the same connection is draining.
   */
  shutdown(): Promise<void> {
    this.shutdownDone ??= this.shutdownOnce();
    return this.shutdownDone;
  }

  private async shutdownOnce(): Promise<void> {
    this.shuttingDown = true;
    if (this.phase !== 'transmission') {
      this.socket.destroy();
      return this.closed;
    }
    this.reader.stop();
    this.wake();
    const grace = setTimeout(() => this.socket.destroy(), this.server.limits.closeGraceMs);
    try {
      await this.drain();
      this.socket.end();
      await this.closed;
    } finally {
      clearTimeout(grace);
    }
  }

  private async serve(): Promise<void> {
    this.socket.setTimeout(this.server.limits.handshakeTimeoutMs, () => {
      this.server.log('nbd: handshake timed out');
      this.socket.destroy();
    });
    this.socket.write(encodeGreeting());
    const entered = await this.handshake();
    this.socket.setTimeout(0);
    if (!entered || this.phase === 'closed') return;
    this.phase = 'transmission';
    if (this.shuttingDown) return; // shutdown() saw the handshake phase and destroyed the socket
    try {
      await this.transmit();
    } catch (error) {
      if (!(error instanceof ConnectionClosedError)) throw error;
      // The client half-closed, vanished mid-request, or shutdown() stopped the reader: let what is
      // running finish (replies go out if the socket still takes them), then close our side.
      await this.drain();
      this.socket.end();
    }
  }

  // ---- handshake ----

  /** Returns true when the client entered transmission with an export chosen. */
  private async handshake(): Promise<boolean> {
    const clientFlags = (await this.readBytes(4)).readUInt32BE(0);
    if ((clientFlags & ~NBD_CLIENT_FLAGS_KNOWN) !== 0) {
      this.server.log(`nbd: unknown client flags 0x${clientFlags.toString(16)}`);
      this.socket.destroy();
      return false;
    }
    this.fixedNewstyle = (clientFlags & NBD_FLAG_C_FIXED_NEWSTYLE) !== 0;
    this.noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;

    for (let optionCount = 0; optionCount < OPTIONS_PER_HANDSHAKE_MAX; optionCount++) {
      const optionHeader = await this.readBytes(OPTION_HEADER_BYTES);
      if (optionHeader.readBigUInt64BE(0) !== NBD_IHAVEOPT) {
        this.server.log('nbd: bad option magic');
        this.socket.destroy();
        return false;
      }
      const option = optionHeader.readUInt32BE(8);
      const dataBytes = optionHeader.readUInt32BE(12);
      if (dataBytes > OPTION_DATA_BYTES_MAX) {
        await this.skipBytes(dataBytes);
        this.replyOption(option, NBD_REP_ERR_TOO_BIG);
        continue;
      }
      const data = await this.readBytes(dataBytes);
      if (this.server.isClosing && option !== NBD_OPT_ABORT) {
        if (option === NBD_OPT_EXPORT_NAME) throw new ConnectionClosedError('server shutting down');
        this.replyOption(option, NBD_REP_ERR_SHUTDOWN);
        continue;
      }
      switch (option) {
        case NBD_OPT_EXPORT_NAME:
          return this.optionExportName(data);
        case NBD_OPT_ABORT:
          // The client may close without reading the ACK; ending after it is what the spec asks.
          this.replyOption(option, NBD_REP_ACK);
          this.socket.end();
          return false;
        case NBD_OPT_LIST:
          this.optionList(data);
          break;
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
          if (this.optionInfo(option, data)) return true;
          break;
        default:
          // STRUCTURED_REPLY, STARTTLS, meta contexts, extended headers: simple replies only, no TLS.
          this.replyOption(option, NBD_REP_ERR_UNSUP);
      }
    }
    this.server.log('nbd: too many options in one handshake');
    this.socket.destroy();
    return false;
  }

  private optionExportName(data: Buffer): boolean {
    const name = data.toString('utf8');
    const found = data.length <= NBD_STRING_BYTES_MAX ? this.server.lookup(name) : undefined;
    if (found === undefined) {
      // NBD_OPT_EXPORT_NAME has no error reply; the spec says to close.
      this.server.log(`nbd: client asked for unknown export ${JSON.stringify(name)}`);
      this.socket.destroy();
      return false;
    }
    this.select(found);
    this.socket.write(encodeExportNameReply(found.sizeBytes(), this.transmissionFlags, this.noZeroes));
    return true;
  }

  private optionList(data: Buffer): void {
    if (data.length !== 0) {
      this.replyOption(NBD_OPT_LIST, NBD_REP_ERR_INVALID);
      return;
    }
    for (const blockExport of this.server.listExports()) {
      this.replyOption(NBD_OPT_LIST, NBD_REP_SERVER, encodeServerEntry(blockExport.name, blockExport.description));
    }
    this.replyOption(NBD_OPT_LIST, NBD_REP_ACK);
  }

  /** NBD_OPT_INFO and NBD_OPT_GO; returns true when GO succeeded and transmission starts. */
  private optionInfo(option: number, data: Buffer): boolean {
    const request = decodeInfoRequest(data);
    if (request === undefined) {
      this.replyOption(option, NBD_REP_ERR_INVALID);
      return false;
    }
    const found = this.server.lookup(request.name);
    if (found === undefined) {
      this.replyOption(option, NBD_REP_ERR_UNKNOWN);
      return false;
    }
    const flags = transmissionFlagsFor(found);
    this.replyOption(option, NBD_REP_INFO, encodeInfoExport(found.sizeBytes(), flags));
    if (request.infoTypes.includes(NBD_INFO_NAME)) {
      this.replyOption(option, NBD_REP_INFO, encodeInfoString(NBD_INFO_NAME, found.name));
    }
    if (request.infoTypes.includes(NBD_INFO_DESCRIPTION) && found.description !== undefined) {
      this.replyOption(option, NBD_REP_INFO, encodeInfoString(NBD_INFO_DESCRIPTION, found.description));
    }
    // Sent whether asked or not (the spec allows it): minimum 1 tells the client any alignment works.
    const preferredBytes = preferredBlockSize(found);
    this.replyOption(option, NBD_REP_INFO, encodeInfoBlockSize(1, preferredBytes, NBD_PAYLOAD_BYTES_MAX));
    this.replyOption(option, NBD_REP_ACK);
    if (option !== NBD_OPT_GO) return false;
    this.select(found);
    return true;
  }

  private select(blockExport: BlockExport): void {
    this.blockExport = blockExport;
    this.transmissionFlags = transmissionFlagsFor(blockExport);
  }

  private replyOption(option: number, replyType: number, payload?: Buffer): void {
    // A client that did not ask for fixed newstyle cannot parse error replies; it only gets a close.
    if (!this.fixedNewstyle && replyType !== NBD_REP_ACK && replyType !== NBD_REP_SERVER && replyType !== NBD_REP_INFO) {
      this.socket.destroy();
      throw new ConnectionClosedError('option error for a non-fixed-newstyle client');
    }
    this.socket.write(encodeOptionReply(option, replyType, payload));
  }

  /**
   * Fills target from the socket as bytes arrive, so a large payload is never held twice (once in
   * socket chunks, once in target).
   */
  private async readInto(target: Buffer): Promise<void> {
    let filledBytes = 0;
    while (filledBytes < target.length) {
      const remainingBytes = target.length - filledBytes;
      if (!this.reader.has(1)) await this.reader.waitFor(Math.min(remainingBytes, STREAM_STEP_BYTES));
      filledBytes += this.reader.copyAvailable(target, filledBytes, remainingBytes);
    }
  }

  private async readBytes(n: number): Promise<Buffer> {
    if (!this.reader.has(n)) await this.reader.waitFor(n);
    const buf = Buffer.allocUnsafe(n);
    this.reader.copyOut(buf, n);
    return buf;
  }

  /** Consumes n bytes without buffering them all, for payloads we refuse. */
  private async skipBytes(n: number): Promise<void> {
    let remainingBytes = n;
    while (remainingBytes > 0) {
      if (!this.reader.has(1)) await this.reader.waitFor(Math.min(remainingBytes, STREAM_STEP_BYTES));
      remainingBytes -= this.reader.discard(remainingBytes);
    }
  }

  // ---- transmission ----

  private async transmit(): Promise<void> {
    const blockExport = this.blockExport;
    assert(blockExport !== undefined, 'transmission without an export');
    const header = this.header;
    const limits = this.server.limits;
    for (;;) {
      // Admission: stop reading while the budget is spent; the socket pauses and TCP pushes back.
      while (
        this.phase === 'transmission' &&
        !this.shuttingDown &&
        (this.inFlightBytes >= limits.inFlightBytesMax || this.inFlightRequests >= limits.inFlightRequestsMax)
      ) {
        await new Promise<void>((resolve) => (this.wakeLoop = resolve));
      }
      if (this.phase !== 'transmission' || this.shuttingDown) return;

      if (!this.reader.has(REQUEST_HEADER_BYTES)) await this.reader.waitFor(REQUEST_HEADER_BYTES);
      this.reader.copyOut(this.headerScratch, REQUEST_HEADER_BYTES);
      header.decode(this.headerScratch, 0);
      if (header.magic !== NBD_REQUEST_MAGIC) {
        this.server.log(`nbd: bad request magic 0x${header.magic.toString(16)}; closing`);
        this.socket.destroy();
        return;
      }
      const handle = Buffer.from(header.handle);

      if (header.command === NBD_CMD_DISC) {
        await this.drain();
        this.socket.end();
        return;
      }

      if (header.command === NBD_CMD_WRITE) {
        if (header.lengthBytes > NBD_PAYLOAD_BYTES_MAX) {
          // Too big to buffer; skip it in bounded steps so the stream stays in sync, then refuse.
          await this.skipBytes(header.lengthBytes);
          this.replyError(handle, NBD_EINVAL);
          continue;
        }
        const payload = Buffer.allocUnsafe(header.lengthBytes);
        // Charge before waiting for the payload so the budget covers the bytes being buffered.
        this.admit(payload.length);
        if (this.reader.has(payload.length)) this.reader.copyOut(payload, payload.length);
        else await this.readInto(payload);
        this.dispatch(blockExport, header, handle, payload, payload.length);
        continue;
      }

      const isChargedRead = header.command === NBD_CMD_READ && header.lengthBytes <= NBD_PAYLOAD_BYTES_MAX;
      const chargedBytes = isChargedRead ? header.lengthBytes : 0;
      this.admit(chargedBytes);
      this.dispatch(blockExport, header, handle, undefined, chargedBytes);
    }
  }

  private admit(chargedBytes: number): void {
    this.inFlightBytes += chargedBytes;
    this.inFlightRequests++;
  }

  /** Validates a request and starts it; its reply is sent whenever it finishes, in any order. */
  private dispatch(
    blockExport: BlockExport,
    header: RequestHeader,
    handle: Buffer,
    payload: Buffer | undefined,
    chargedBytes: number,
  ): void {
    const request = new Request(
      header.command,
      header.commandFlags,
      handle,
      header.offsetBytes,
      payload !== undefined ? payload.length : header.lengthBytes,
      payload,
      chargedBytes,
    );
    const refusal = this.validate(blockExport, request);
    if (refusal !== 0) {
      this.finish(request, refusal, undefined);
      return;
    }
    const isMutation =
      request.command === NBD_CMD_WRITE || request.command === NBD_CMD_TRIM || request.command === NBD_CMD_WRITE_ZEROES;
    // Collect what this request must wait for *now*, in arrival order: earlier overlapping mutations for
    // a mutation (so overlapping writes land in request order), every earlier mutation for a flush.
    let waitFor: Promise<void>[] | undefined;
    if (isMutation || request.command === NBD_CMD_FLUSH) {
      for (const earlier of this.pendingMutations) {
        if (request.command === NBD_CMD_FLUSH || overlaps(earlier, request)) {
          assert(earlier.applied !== undefined, 'pending mutation has a settle promise');
          (waitFor ??= []).push(earlier.applied);
        }
      }
    }
    if (isMutation) {
      request.applied = new Promise<void>((resolve) => (request.markApplied = resolve));
      this.pendingMutations.push(request);
    }
    this.runningRequests++;
    this.execute(blockExport, request, waitFor).catch((error: unknown) => {
      // execute() handles export failures itself; reaching here is a bug in this file.
      this.server.log(`nbd: internal error: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
      this.socket.destroy();
    });
  }

  /** Returns 0 when the request may run, otherwise the NBD errno to refuse it with. */
  private validate(blockExport: BlockExport, request: Request): number {
    const command = request.command;
    const allowedFlags = command === NBD_CMD_WRITE_ZEROES ? NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE : NBD_CMD_FLAG_FUA;
    if ((request.commandFlags & ~allowedFlags) !== 0) return NBD_EINVAL;
    switch (command) {
      case NBD_CMD_FLUSH:
        return 0;
      case NBD_CMD_READ:
        if (request.lengthBytes > NBD_PAYLOAD_BYTES_MAX) return NBD_EINVAL;
        break;
      case NBD_CMD_WRITE:
      case NBD_CMD_TRIM:
      case NBD_CMD_WRITE_ZEROES:
        if (blockExport.readonly) return NBD_EPERM;
        break;
      default:
        return NBD_EINVAL;
    }
    if (request.endBytes > blockExport.sizeBytes()) return NBD_EINVAL;
    return 0;
  }

  private async execute(blockExport: BlockExport, request: Request, waitFor: Promise<void>[] | undefined): Promise<void> {
    if (waitFor !== undefined) await Promise.all(waitFor);
    let errorCode = 0;
    let data: Buffer | undefined;
    try {
      data = await this.perform(blockExport, request);
      if ((request.commandFlags & NBD_CMD_FLAG_FUA) !== 0 && request.command !== NBD_CMD_READ) {
        await blockExport.flush();
      }
    } catch (error) {
      errorCode = nbdErrorFor(error);
      data = undefined;
      this.server.log(`nbd: ${commandName(request.command)} ${request.offsetBytes}+${request.lengthBytes} failed: ${String(error)}`);
    }
    if (request.markApplied !== undefined) {
      const index = this.pendingMutations.indexOf(request);
      assert(index >= 0, 'applied mutation was pending');
      this.pendingMutations.splice(index, 1);
      request.markApplied();
    }
    this.runningRequests--;
    this.finish(request, errorCode, data);
    if (this.runningRequests === 0 && this.resolveDrained !== undefined) {
      const resolve = this.resolveDrained;
      this.resolveDrained = undefined;
      this.drained = undefined;
      resolve();
    }
  }

  private async perform(blockExport: BlockExport, request: Request): Promise<Buffer | undefined> {
    switch (request.command) {
      case NBD_CMD_READ: {
        const data = await blockExport.read(request.offsetBytes, request.lengthBytes);
        // A short or long buffer would desynchronise the stream for every later reply.
        if (data.length !== request.lengthBytes) {
          this.server.log(`nbd: export ${blockExport.name} returned ${data.length} bytes for a ${request.lengthBytes}-byte read`);
          throw new Error('export returned the wrong number of bytes');
        }
        return data;
      }
      case NBD_CMD_WRITE:
        assert(request.payload !== undefined, 'write has a payload');
        await blockExport.write(request.offsetBytes, request.payload);
        return undefined;
      case NBD_CMD_FLUSH:
        if (!blockExport.readonly) await blockExport.flush();
        return undefined;
      case NBD_CMD_TRIM:
        if (request.lengthBytes > 0) await blockExport.trim(request.offsetBytes, request.lengthBytes);
        return undefined;
      case NBD_CMD_WRITE_ZEROES:
        if (request.lengthBytes > 0) {
          const mayPunch = (request.commandFlags & NBD_CMD_FLAG_NO_HOLE) === 0;
          await blockExport.writeZeroes(request.offsetBytes, request.lengthBytes, mayPunch);
        }
        return undefined;
      default:
        assert(false, `validated command ${request.command} has no handler`);
    }
  }

  /** Queues the reply; the request's charge is released once the socket has flushed it. */
  private finish(request: Request, errorCode: number, data: Buffer | undefined): void {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) {
      this.release(request.chargedBytes);
      return;
    }
    this.queuedReplyCharges.push(request.chargedBytes);
    const header = encodeSimpleReplyHeader(errorCode, request.handle);
    if (errorCode === 0 && data !== undefined && data.length > 0) {
      socket.cork();
      socket.write(header);
      socket.write(data, this.onReplyFlushed);
      socket.uncork();
    } else {
      // A failed read still owes the client nothing but the header: simple replies carry no data on error.
      socket.write(header, this.onReplyFlushed);
    }
  }

  private replyError(handle: Buffer, errorCode: number): void {
    this.admit(0);
    this.finish(new Request(NBD_CMD_WRITE, 0, handle, 0, 0, undefined, 0), errorCode, undefined);
  }

  private releaseOldestReply(): void {
    const charge = this.queuedReplyCharges[this.queuedReplyHead];
    if (charge === undefined) return; // the socket was torn down and the queue already forgotten
    this.queuedReplyHead++;
    if (this.queuedReplyHead === this.queuedReplyCharges.length) {
      this.queuedReplyCharges.length = 0;
      this.queuedReplyHead = 0;
    } else if (this.queuedReplyHead > 1024) {
      this.queuedReplyCharges.splice(0, this.queuedReplyHead);
      this.queuedReplyHead = 0;
    }
    this.release(charge);
  }

  private release(chargedBytes: number): void {
    this.inFlightBytes -= chargedBytes;
    this.inFlightRequests--;
    assert(this.inFlightBytes >= 0 && this.inFlightRequests >= 0, 'in-flight accounting went negative');
    this.wake();
  }

  private wake(): void {
    const wake = this.wakeLoop;
    if (wake !== undefined) {
      this.wakeLoop = undefined;
      wake();
    }
  }

  /** Resolves when no export operation of this connection is running (replies may still be queued). */
  private async drain(): Promise<void> {
    while (this.runningRequests > 0) {
      this.drained ??= new Promise<void>((resolve) => (this.resolveDrained = resolve));
      await this.drained;
    }
  }
}

function transmissionFlagsFor(blockExport: BlockExport): number {
  let flags =
    NBD_FLAG_HAS_FLAGS |
    NBD_FLAG_SEND_FLUSH |
    NBD_FLAG_SEND_FUA |
    NBD_FLAG_CAN_MULTI_CONN;
  if (blockExport.readonly) flags |= NBD_FLAG_READ_ONLY;
  else flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
  return flags;
}

function preferredBlockSize(blockExport: BlockExport): number {
  const sizeBytes = blockExport.blockSizeBytes;
  const isPowerOfTwo = Number.isInteger(sizeBytes) && sizeBytes > 0 && (sizeBytes & (sizeBytes - 1)) === 0;
  if (!isPowerOfTwo) return BLOCK_SIZE_PREFERRED_DEFAULT;
  return Math.min(sizeBytes, NBD_PAYLOAD_BYTES_MAX);
}

function overlaps(a: Request, b: Request): boolean {
  return a.offsetBytes < b.endBytes && b.offsetBytes < a.endBytes;
}

function commandName(command: number): string {
  switch (command) {
    case NBD_CMD_READ:
      return 'read';
    case NBD_CMD_WRITE:
      return 'write';
    case NBD_CMD_FLUSH:
      return 'flush';
    case NBD_CMD_TRIM:
      return 'trim';
    case NBD_CMD_WRITE_ZEROES:
      return 'write-zeroes';
    default:
      return `command ${command}`;
  }
}

