/**
 * A BlockExport over a plain file: the oracle the NBD tests serve through real clients, and a way to
 * export a raw image without a pool. Trim and write-zeroes write zeroes (Node has no fallocate punch),
 * in bounded steps from one shared zero buffer.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { CairnError } from '../util/errors.js';
import type { BlockExport } from './server.js';

const ZERO_STEP_BYTES = 1024 * 1024;
const ZEROES = Buffer.alloc(ZERO_STEP_BYTES);

export interface FileBlockExportOptions {
  name: string;
  description?: string;
  readonly?: boolean;
  blockSizeBytes?: number;
}

export class FileBlockExport implements BlockExport {
  readonly name: string;
  readonly description?: string;
  readonly readonly: boolean;
  readonly blockSizeBytes: number;

  private constructor(
    private readonly handle: FileHandle,
    private readonly fileSizeBytes: number,
    options: FileBlockExportOptions,
  ) {
    this.name = options.name;
    if (options.description !== undefined) this.description = options.description;
    this.readonly = options.readonly ?? false;
    this.blockSizeBytes = options.blockSizeBytes ?? 4096;
  }

  /** Opens an existing file; its current length is the export's size. */
  static async open(path: string, options: FileBlockExportOptions): Promise<FileBlockExport> {
    const handle = await open(path, options.readonly === true ? 'r' : 'r+');
    try {
      const stat = await handle.stat();
      return new FileBlockExport(handle, stat.size, options);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  sizeBytes(): number {
    return this.fileSizeBytes;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let doneBytes = 0;
    while (doneBytes < length) {
      const { bytesRead } = await this.handle.read(buf, doneBytes, length - doneBytes, offset + doneBytes);
      if (bytesRead === 0) throw new CairnError('EIO', `short read at ${offset + doneBytes}`);
      doneBytes += bytesRead;
    }
    return buf;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.checkWritable();
    let doneBytes = 0;
    while (doneBytes < data.length) {
      const { bytesWritten } = await this.handle.write(data, doneBytes, data.length - doneBytes, offset + doneBytes);
      doneBytes += bytesWritten;
    }
  }

  async flush(): Promise<void> {
    if (!this.readonly) await this.handle.datasync();
  }

  trim(offset: number, length: number): Promise<void> {
    return this.writeZeroes(offset, length, true);
  }

  async writeZeroes(offset: number, length: number, _mayPunch: boolean): Promise<void> {
    this.checkWritable();
    for (let doneBytes = 0; doneBytes < length; ) {
      const stepBytes = Math.min(ZERO_STEP_BYTES, length - doneBytes);
      const { bytesWritten } = await this.handle.write(ZEROES, 0, stepBytes, offset + doneBytes);
      doneBytes += bytesWritten;
    }
  }

  close(): Promise<void> {
    return this.handle.close();
  }

  private checkWritable(): void {
    if (this.readonly) throw new CairnError('EROFS', `export ${this.name} is read-only`);
  }
}
