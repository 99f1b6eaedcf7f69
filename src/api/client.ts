/**
 * The CLI's side of the daemon API: JSON verbs and streamed file bodies over HTTP on the Unix socket,
 * and starting the daemon when none answers (detached, logging to $CAIRN_HOME/cairnd.log). Two CLIs that
 * start a daemon at once are safe: the daemon's pid lock lets one win and both CLIs wait for its socket.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, renameSync, statSync } from 'node:fs';
import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { CairnError, isCairnError } from '../util/errors.js';
import { prepareHome, processAlive, readPid } from './home.js';
import type { CairnHome } from './home.js';
import { API_PREFIX, DIFF_ENDPOINT, ERROR_TRAILER, FILE_ENDPOINT, JSON_BODY_BYTES_MAX, VOLUME_ENDPOINT } from './protocol.js';
import type { ApiResponse, DaemonInfo, Verb, VerbArgs, VerbResult, WireError } from './protocol.js';

/** bin/cairn.js names it, since the CLI may run from a transpiled copy elsewhere. */
const DAEMON_BIN_PATH = process.env['CAIRN_DAEMON_BIN'] ?? fileURLToPath(new URL('../../bin/cairnd.js', import.meta.url));
export const DAEMON_START_TIMEOUT_MS = 20_000;
/** libuv threads for a daemon the CLI starts: device I/O of many pools and clients in parallel. */
const DAEMON_THREADPOOL_SIZE = 16;
const DAEMON_POLL_MS = 40;
const RESPONSE_BYTES_MAX = 64 * JSON_BODY_BYTES_MAX;
const LOG_BYTES_MAX = 10 * 1024 * 1024;

export class DaemonClient {
  constructor(readonly home: CairnHome) {}

  async call<V extends Verb>(verb: V, args: VerbArgs<V>): Promise<VerbResult<V>> {
    const body = Buffer.from(JSON.stringify(args));
    const response = await this.send('POST', `${API_PREFIX}${verb}`, body);
    return readJsonResponse<VerbResult<V>>(response);
  }

  /** Streams source into dataset:path (created or truncated); resolves with the bytes written. */
  async putFile(dataset: string, path: string, source: Readable, modeBits?: number): Promise<number> {
    const query = new URLSearchParams({ dataset, path });
    if (modeBits !== undefined) query.set('mode', (modeBits & 0o7777).toString(8));
    const response = await this.send('PUT', `${FILE_ENDPOINT}?${query.toString()}`, source);
    return (await readJsonResponse<{ sizeBytes: number }>(response)).sizeBytes;
  }

  /** The chunks of dataset:path; throws at the end if the daemon reported a failure mid-stream. */
  async getFile(dataset: string, path: string): Promise<AsyncIterable<Buffer>> {
    const query = new URLSearchParams({ dataset, path });
    const response = await this.send('GET', `${FILE_ENDPOINT}?${query.toString()}`, null);
    if (response.statusCode !== 200) return readJsonResponse<never>(response);
    return checkedBody(response);
  }

  /** Streams source into a volume from offsetBytes; resolves (once durable) with the bytes written. */
  async putVolume(dataset: string, offsetBytes: number, source: Readable): Promise<number> {
    const query = new URLSearchParams({ dataset, offset: String(offsetBytes) });
    const response = await this.send('PUT', `${VOLUME_ENDPOINT}?${query.toString()}`, source);
    return (await readJsonResponse<{ sizeBytes: number }>(response)).sizeBytes;
  }

  /** A volume's bytes from offsetBytes, lengthBytes of them (or to the end), cut at the volume's end. */
  async getVolume(dataset: string, offsetBytes: number, lengthBytes?: number): Promise<AsyncIterable<Buffer>> {
    const query = new URLSearchParams({ dataset, offset: String(offsetBytes) });
    if (lengthBytes !== undefined) query.set('length', String(lengthBytes));
    const response = await this.send('GET', `${VOLUME_ENDPOINT}?${query.toString()}`, null);
    if (response.statusCode !== 200) return readJsonResponse<never>(response);
    return checkedBody(response);
  }

  /** zfs diff output lines for from → to (to: the dataset itself when omitted). */
  async getDiff(
    from: string,
    to: string | undefined,
    options: { classify?: boolean; scripted?: boolean; escape?: boolean },
  ): Promise<AsyncIterable<Buffer>> {
    const query = new URLSearchParams({ from });
    if (to !== undefined) query.set('to', to);
    if (options.classify === true) query.set('classify', '1');
    if (options.scripted === true) query.set('scripted', '1');
    if (options.escape === false) query.set('escape', '0');
    const response = await this.send('GET', `${DIFF_ENDPOINT}?${query.toString()}`, null);
    if (response.statusCode !== 200) return readJsonResponse<never>(response);
    return checkedBody(response);
  }

  private send(method: string, path: string, body: Buffer | Readable | null): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = {};
      if (Buffer.isBuffer(body)) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = body.length;
      } else if (body !== null) {
        headers['content-type'] = 'application/octet-stream';
        // The daemon checks the target first; a bad path is answered before any byte is sent.
        headers['expect'] = '100-continue';
      }
      const outgoing = request({ socketPath: this.home.socketPath, method, path, headers, agent: false });
      let answered = false;
      outgoing.once('response', (response) => {
        answered = true;
        resolve(response);
      });
      outgoing.on('error', (error: NodeJS.ErrnoException) => {
        // After the daemon has answered (say, an error to an upload), a broken pipe is expected.
        if (!answered) reject(connectionError(error, this.home.socketPath));
      });
      if (body === null) outgoing.end();
      else if (Buffer.isBuffer(body)) outgoing.end(body);
      else {
        body.once('error', (error) => {
          outgoing.destroy();
          reject(error);
        });
        outgoing.once('continue', () => body.pipe(outgoing));
      }
    });
  }
}

function connectionError(error: NodeJS.ErrnoException, socketPath: string): CairnError {
  if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') {
    return new CairnError('ENODAEMON', `cairnd is not running (no daemon on ${socketPath})`);
  }
  return new CairnError('EIO', `connection to cairnd failed: ${error.message}`);
}

async function readJsonResponse<T>(response: IncomingMessage): Promise<T> {
  const chunks: Buffer[] = [];
  let sizeBytes = 0;
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      sizeBytes += chunk.length;
      if (sizeBytes > RESPONSE_BYTES_MAX) throw new CairnError('EPROTO', 'daemon answer is too large');
      chunks.push(chunk);
    }
  } catch (error) {
    if (isCairnError(error)) throw error;
    throw new CairnError('EIO', `connection to cairnd lost: ${(error as Error).message}`);
  }
  let parsed: ApiResponse<T>;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ApiResponse<T>;
  } catch {
    throw new CairnError('EPROTO', `daemon answered HTTP ${response.statusCode ?? '?'} without a JSON body`);
  }
  if (parsed.ok) return parsed.result;
  throw CairnError.fromWire(parsed.error);
}

async function* checkedBody(response: IncomingMessage): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) yield chunk;
  } catch (error) {
    throw new CairnError('EIO', `transfer from cairnd was interrupted: ${(error as Error).message}`);
  }
  const trailer = response.trailers[ERROR_TRAILER];
  if (trailer === 'none') return;
  if (trailer === undefined || trailer === '') throw new CairnError('EIO', 'transfer from cairnd was interrupted');
  let wire: WireError;
  try {
    wire = JSON.parse(decodeURIComponent(trailer)) as WireError;
  } catch {
    throw new CairnError('EPROTO', 'daemon sent a malformed error trailer');
  }
  throw CairnError.fromWire(wire);
}

/** A client for a daemon that answers, starting one if none does (autoStart). */
export async function connectDaemon(home: CairnHome, options: { autoStart: boolean }): Promise<DaemonClient> {
  const client = new DaemonClient(home);
  try {
    await client.call('daemon.status', {});
    return client;
  } catch (error) {
    if (!options.autoStart || !isCairnError(error, 'ENODAEMON')) throw error;
  }
  await startDaemon(home);
  return client;
}

/** Starts cairnd detached and waits until it answers; returns what it says about itself. */
export async function startDaemon(home: CairnHome): Promise<DaemonInfo> {
  prepareHome(home);
  rotateLog(home.logPath);
  const logFd = openSync(home.logPath, 'a', 0o600);
  let exitCode: number | null = null;
  try {
    const child = spawn(process.execPath, [DAEMON_BIN_PATH], {
      detached: true,
      // Not the caller's directory: the daemon outlives it and must not pin it (or a mount under it).
      cwd: home.dir,
      stdio: ['ignore', logFd, logFd],
      // Read by libuv once at startup, so it must be set here.
      env: { UV_THREADPOOL_SIZE: String(DAEMON_THREADPOOL_SIZE), ...process.env, CAIRN_HOME: home.dir },
    });
    child.once('exit', (code) => {
      exitCode = code ?? 1;
    });
    child.unref();
  } finally {
    closeSync(logFd);
  }
  const client = new DaemonClient(home);
  const deadlineMs = Date.now() + DAEMON_START_TIMEOUT_MS;
  for (;;) {
    try {
      return await client.call('daemon.status', {});
    } catch (error) {
      if (!isCairnError(error, 'ENODAEMON')) throw error;
    }
    // Our daemon gave up; keep waiting only if another one (a racing start) holds the lock.
    const lockPid = readPid(home.pidPath);
    if (exitCode !== null && (lockPid === null || !processAlive(lockPid))) {
      throw new CairnError('ENODAEMON', `cairnd failed to start: ${lastLogLine(home.logPath)}`);
    }
    if (Date.now() > deadlineMs) {
      throw new CairnError('ENODAEMON', `cairnd did not answer within ${DAEMON_START_TIMEOUT_MS / 1000} s; see ${home.logPath}`);
    }
    await new Promise((resolve) => setTimeout(resolve, DAEMON_POLL_MS));
  }
}

/** Keeps one previous log: the daemon log is bounded to about twice LOG_BYTES_MAX. */
function rotateLog(logPath: string): void {
  try {
    if (statSync(logPath).size > LOG_BYTES_MAX) renameSync(logPath, `${logPath}.1`);
  } catch {
    // No log yet, or a racing start rotated it: either way there is nothing to do.
  }
}

function lastLogLine(logPath: string): string {
  try {
    const lines = readFileSync(logPath, 'utf8').trimEnd().split('\n');
    return lines[lines.length - 1] ?? `see ${logPath}`;
  } catch {
    return `see ${logPath}`;
  }
}
