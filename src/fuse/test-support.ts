/** Shared by the FUSE tests: child processes (never a Sync call on our own mount) and a safe unmount. */
import { execFile } from 'node:child_process';
import type { FuseMount } from './index.js';

const OUTPUT_BYTES_MAX = 4 * 1024 * 1024;

/** Runs a tool as a child process; rejects with its stderr attached. */
export function run(
  command: string,
  args: string[],
  options: { uid?: number; gid?: number; timeout?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { encoding: 'utf8', maxBuffer: OUTPUT_BYTES_MAX, ...options }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

/**
 * Unmounts; when that fails, aborts the connection: a process that exits while one of its own
 * requests to the mount it serves is unanswered would hang forever in the kernel.
 */
export async function safeUnmount(mount: FuseMount | null, path: string): Promise<void> {
  if (mount) {
    try {
      await mount.unmount();
      return;
    } catch {
      await mount.abort();
    }
  }
  await run('fusermount', ['-uz', path]).catch(() => undefined);
}
