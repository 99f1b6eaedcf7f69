/**
 * cairnd's entry point. One daemon per CAIRN_HOME: the pid file is the lock (created O_EXCL; a pid file
 * whose process is gone is stale and taken over), the lock is re-read after a moment so two daemons that
 * broke the same stale lock at once cannot both win, and a socket that still answers is never stolen.
 * SIGTERM, SIGINT and `cairn daemon stop` unmount, end NBD exports and close the pools cleanly; the
 * pools stay remembered in pools.json.
 */
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { connect } from 'node:net';
import { pathToFileURL } from 'node:url';
import { CairnError, isCairnError } from '../util/errors.js';
import { cairnHome, prepareHome, processAlive, readPid } from './home.js';
import type { CairnHome } from './home.js';
import { DaemonServer } from './server.js';

const LOCK_ATTEMPTS_MAX = 5;
const LOCK_SETTLE_MS = 50;
const SHUTDOWN_TIMEOUT_MS = 60_000;

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} cairnd[${process.pid}]: ${line}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function acquirePidLock(pidPath: string): Promise<void> {
  for (let attempt = 0; attempt < LOCK_ATTEMPTS_MAX; attempt++) {
    try {
      const fd = openSync(pidPath, 'wx', 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      await sleep(LOCK_SETTLE_MS);
      if (readPid(pidPath) === process.pid) return;
      throw new CairnError('EBUSY', `cairnd is already running (pid ${readPid(pidPath) ?? '?'})`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const pid = readPid(pidPath);
    if (pid !== null && processAlive(pid)) throw new CairnError('EBUSY', `cairnd is already running (pid ${pid})`);
    if (pid === null) {
      // Either stale garbage or a daemon that created the file and has not written its pid yet.
      await sleep(LOCK_SETTLE_MS);
      if (readPid(pidPath) !== null) continue;
    }
    log(`removing stale pid file ${pidPath} (pid ${pid ?? 'unreadable'})`);
    try {
      unlinkSync(pidPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  throw new CairnError('EBUSY', `could not take the daemon lock ${pidPath}`);
}

function releasePidLock(pidPath: string): void {
  if (readPid(pidPath) !== process.pid) return;
  try {
    unlinkSync(pidPath);
  } catch {
    // Already gone: nothing to release.
  }
}

function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function claimSocket(socketPath: string): Promise<void> {
  if (await socketAnswers(socketPath)) {
    throw new CairnError('EBUSY', `another daemon answers on ${socketPath}`);
  }
  try {
    unlinkSync(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

export async function runDaemon(home: CairnHome = cairnHome()): Promise<number> {
  prepareHome(home);
  await acquirePidLock(home.pidPath);
  let stopping: Promise<void> | null = null;
  const server = new DaemonServer({ home, log, onStopRequested: () => void stop('stop requested') });

  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      log(`stopping (${reason})`);
      const timer = setTimeout(() => {
        log('pools did not close in time; exiting anyway');
        finish(1);
      }, SHUTDOWN_TIMEOUT_MS);
      timer.unref();
      await server.close();
      finish(0);
    })();
    return stopping;
  };
  const finish = (code: number): void => {
    try {
      unlinkSync(home.socketPath);
    } catch {
      // The socket may never have been created.
    }
    releasePidLock(home.pidPath);
    log('stopped');
    process.exit(code);
  };

  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => undefined);
  // A stray rejection in one request must not take every pool down with the process.
  process.on('unhandledRejection', (reason) => log(`unhandled rejection: ${String(reason)}`));

  try {
    await claimSocket(home.socketPath);
    await server.listen();
  } catch (error) {
    releasePidLock(home.pidPath);
    throw error;
  }
  log(`listening on ${home.socketPath}`);
  await server.restorePools();
  return 0;
}

function isMain(): boolean {
  const entry = process.argv[1];
  return entry !== undefined && import.meta.url === pathToFileURL(entry).href;
}

export async function daemonMain(): Promise<void> {
  try {
    await runDaemon();
  } catch (error) {
    const message = isCairnError(error) ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`cairnd: ${message}\n`);
    process.exit(1);
  }
}

if (isMain()) await daemonMain();
