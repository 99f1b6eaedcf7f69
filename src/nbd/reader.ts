/**
 * Pull-style reading from a socket with back-pressure: the socket flows only while someone waits for
 * bytes or the buffer holds less than a small read-ahead. When the server stops asking (its in-flight
 * budget is spent) the socket is paused and TCP flow control pushes back on the client, so a fast client
 * cannot make the server buffer without limit.
 */
import type { Socket } from 'node:net';
import { assert } from '../util/assert.js';

/** The peer went away (or the server stopped reading) before the bytes a reader waited for arrived. */
export class ConnectionClosedError extends Error {
  override name = 'ConnectionClosedError';
}

export class SocketReader {
  private readonly chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private headOffsetBytes = 0;
  private bufferedBytes = 0;
  private wantBytes = 0;
  private resolveWait: (() => void) | undefined;
  private rejectWait: ((error: Error) => void) | undefined;
  private finished = false;

  constructor(
    private readonly socket: Socket,
    private readonly readAheadBytes: number,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.finish());
    socket.on('close', () => this.finish());
  }

  /** True when n bytes can be taken now without waiting. */
  has(n: number): boolean {
    return this.bufferedBytes >= n;
  }

  /** Resolves once n bytes are buffered; rejects with ConnectionClosedError if they never will be. */
  waitFor(n: number): Promise<void> {
    assert(this.resolveWait === undefined, 'one waiter at a time');
    if (this.bufferedBytes >= n) return Promise.resolve();
    if (this.finished) return Promise.reject(new ConnectionClosedError('connection closed'));
    this.wantBytes = n;
    if (this.socket.isPaused()) this.socket.resume();
    return new Promise<void>((resolve, reject) => {
      this.resolveWait = resolve;
      this.rejectWait = reject;
    });
  }

  /** Moves n buffered bytes into target[0, n) and consumes them. */
  copyOut(target: Buffer, n: number): void {
    assert(this.bufferedBytes >= n && target.length >= n, 'copyOut beyond buffered bytes');
    let copiedBytes = 0;
    while (copiedBytes < n) {
      const chunk = this.chunks[0];
      assert(chunk !== undefined, 'buffered bytes without a chunk');
      const takeBytes = Math.min(n - copiedBytes, chunk.length - this.headOffsetBytes);
      chunk.copy(target, copiedBytes, this.headOffsetBytes, this.headOffsetBytes + takeBytes);
      this.consumeHead(takeBytes);
      copiedBytes += takeBytes;
    }
  }

  /** Moves up to n buffered bytes into target at targetOffset; returns how many were moved. */
  copyAvailable(target: Buffer, targetOffset: number, n: number): number {
    const takeBytes = Math.min(n, this.bufferedBytes);
    if (takeBytes > 0) this.copyOut(targetOffset === 0 ? target : target.subarray(targetOffset), takeBytes);
    return takeBytes;
  }

  /** Drops up to n buffered bytes; returns how many were dropped. */
  discard(n: number): number {
    let droppedBytes = 0;
    while (droppedBytes < n && this.bufferedBytes > 0) {
      const chunk = this.chunks[0];
      assert(chunk !== undefined, 'buffered bytes without a chunk');
      const takeBytes = Math.min(n - droppedBytes, chunk.length - this.headOffsetBytes);
      this.consumeHead(takeBytes);
      droppedBytes += takeBytes;
    }
    return droppedBytes;
  }

  /** Stops reading for good: a pending wait rejects and the socket stays paused. */
  stop(): void {
    this.socket.pause();
    this.finish();
  }

  private consumeHead(n: number): void {
    this.headOffsetBytes += n;
    this.bufferedBytes -= n;
    const chunk = this.chunks[0];
    if (chunk !== undefined && this.headOffsetBytes === chunk.length) {
      this.chunks.shift();
      this.headOffsetBytes = 0;
    }
    // Below the read-ahead again: let the socket fill the buffer while nobody waits.
    if (!this.finished && this.bufferedBytes < this.readAheadBytes && this.socket.isPaused()) {
      this.socket.resume();
    }
  }

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    const resolve = this.resolveWait;
    if (resolve !== undefined && this.bufferedBytes >= this.wantBytes) {
      this.resolveWait = undefined;
      this.rejectWait = undefined;
      this.wantBytes = 0;
      resolve();
    }
    if (this.bufferedBytes >= Math.max(this.wantBytes, this.readAheadBytes)) this.socket.pause();
  }

  private finish(): void {
    this.finished = true;
    const reject = this.rejectWait;
    this.resolveWait = undefined;
    this.rejectWait = undefined;
    if (reject !== undefined) reject(new ConnectionClosedError('connection closed'));
  }
}
