/**
 * Where the daemon keeps its state (CAIRN_HOME): the socket, pid file, log, the remembered-pools
 * file and the record of mounts (mounts.json). Tests always set CAIRN_HOME; users get $XDG_DATA_HOME/cairn or ~/.local/share/cairn.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { CairnError } from '../util/errors.js';

/** sun_path is 108 bytes on Linux, including the terminating NUL. */
const SOCKET_PATH_BYTES_MAX = 107;

export interface CairnHome {
  dir: string;
  socketPath: string;
  pidPath: string;
  logPath: string;
  poolsPath: string;
  /** The mounts cairnd serves, so the next start can clean up after a crash. */
  mountsPath: string;
}

export function cairnHome(env: NodeJS.ProcessEnv = process.env): CairnHome {
  const base = env['CAIRN_HOME'] ?? join(env['XDG_DATA_HOME'] ?? join(homedir(), '.local', 'share'), 'cairn');
  const dir = resolve(base);
  return {
    dir,
    socketPath: join(dir, 'cairnd.sock'),
    pidPath: join(dir, 'cairnd.pid'),
    logPath: join(dir, 'cairnd.log'),
    poolsPath: join(dir, 'pools.json'),
    mountsPath: join(dir, 'mounts.json'),
  };
}

/** Creates CAIRN_HOME (private to the user) and checks the socket path fits in sun_path. */
export function prepareHome(home: CairnHome): void {
  mkdirSync(home.dir, { recursive: true, mode: 0o700 });
  if (Buffer.byteLength(home.socketPath) > SOCKET_PATH_BYTES_MAX) {
    throw new CairnError(
      'EINVAL',
      `socket path ${home.socketPath} is longer than ${SOCKET_PATH_BYTES_MAX} bytes; set CAIRN_HOME to a shorter directory`,
    );
  }
}

/** The pid in a pid file, or null when it is missing, empty or garbage. */
export function readPid(pidPath: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(pidPath, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
