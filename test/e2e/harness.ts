/**
 * Runs the real `cairn` CLI (bin/cairn.js) against the real daemon it starts, in a private CAIRN_HOME
 * under os.tmpdir(). stop() kills whatever daemon the test started and removes the directory.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CAIRN_BIN = fileURLToPath(new URL('../../bin/cairn.js', import.meta.url));
export const CAIRND_BIN = fileURLToPath(new URL('../../bin/cairnd.js', import.meta.url));

export interface RunResult {
  code: number;
  stdout: string;
  stdoutBytes: Buffer;
  stderr: string;
}

export class CairnSandbox {
  private constructor(
    /** Scratch directory: CAIRN_HOME is dir/home, device files and local copies live beside it. */
    readonly dir: string,
  ) {}

  static async create(label: string): Promise<CairnSandbox> {
    return new CairnSandbox(await mkdtemp(join(tmpdir(), `cairn-e2e-${label}-`)));
  }

  get home(): string {
    return join(this.dir, 'home');
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  env(): NodeJS.ProcessEnv {
    return { ...process.env, CAIRN_HOME: this.home };
  }

  run(args: string[], options: { input?: Buffer; bin?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [options.bin ?? CAIRN_BIN, ...args], {
        cwd: this.dir,
        env: this.env(),
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        const stdoutBytes = Buffer.concat(out);
        resolve({ code: code ?? -1, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr: Buffer.concat(err).toString('utf8') });
      });
      child.stdin.end(options.input ?? Buffer.alloc(0));
    });
  }

  /** Runs and insists on exit 0, showing stderr when not. */
  async ok(args: string[], options: { input?: Buffer } = {}): Promise<RunResult> {
    const result = await this.run(args, options);
    if (result.code !== 0) {
      throw new Error(`cairn ${args.join(' ')} exited ${result.code}\nstderr: ${result.stderr}\nstdout: ${result.stdout}`);
    }
    return result;
  }

  daemonPid(): number | null {
    try {
      const pid = Number.parseInt(readFileSync(join(this.home, 'cairnd.pid'), 'utf8'), 10);
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
  }

  /** Kills the sandbox's daemon (TERM, then KILL after 10 s) and removes the directory. */
  async stop(options: { keepDir?: boolean } = {}): Promise<void> {
    const pid = this.daemonPid();
    if (pid !== null) await killAndWait(pid, 'SIGTERM', 10_000);
    if (options.keepDir !== true) await rm(this.dir, { recursive: true, force: true });
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function killAndWait(pid: number, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (alive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Seeded bytes (xorshift32), so a failing comparison can be replayed from the seed it prints. */
export function seededBytes(seed: number, sizeBytes: number): Buffer {
  const data = Buffer.allocUnsafe(sizeBytes);
  let state = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i + 4 <= sizeBytes; i += 4) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    data.writeUInt32LE(state, i);
  }
  for (let i = sizeBytes - (sizeBytes % 4); i < sizeBytes; i++) data[i] = i & 0xff;
  return data;
}

/** The message a failing CLI call must have: one line, `cairn: …`, no stack trace. */
export function isOneLineError(stderr: string): boolean {
  return /^cairn: [^\n]+\n$/.test(stderr) && !/\bat .+:\d+:\d+/.test(stderr);
}
