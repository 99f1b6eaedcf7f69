/**
 * NBD wire format (NetworkBlockDevice/nbd doc/proto.md): the fixed-newstyle handshake, option haggling
 * and simple replies of the transmission phase. Everything on the wire is big-endian. This module only
 * names numbers and encodes/decodes fixed-size messages; the state machine lives in server.ts.
 */
import { isCairnError } from '../util/errors.js';

/** "NBDMAGIC", the first 8 bytes the server sends. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": newstyle negotiation magic, sent by the server after NBDMAGIC and by the client before every option. */
export const NBD_IHAVEOPT = 0x49484156454f5054n;
/** Magic that starts every option reply. */
export const NBD_OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;

// Handshake flags (server, 16 bits) and client flags (32 bits).
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;
export const NBD_CLIENT_FLAGS_KNOWN = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;

// Option reply types.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = (NBD_REP_FLAG_ERROR | 1) >>> 0;
export const NBD_REP_ERR_POLICY = (NBD_REP_FLAG_ERROR | 2) >>> 0;
export const NBD_REP_ERR_INVALID = (NBD_REP_FLAG_ERROR | 3) >>> 0;
export const NBD_REP_ERR_UNKNOWN = (NBD_REP_FLAG_ERROR | 6) >>> 0;
export const NBD_REP_ERR_SHUTDOWN = (NBD_REP_FLAG_ERROR | 7) >>> 0;
export const NBD_REP_ERR_TOO_BIG = (NBD_REP_FLAG_ERROR | 9) >>> 0;

// Information types for NBD_OPT_INFO / NBD_OPT_GO.
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// Transmission flags (16 bits).
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

// Commands and command flags.
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;

// Errors carried in simple replies (Linux errno values, fixed by the spec whatever the host OS).
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/** Size of a transmission request header: magic, flags, type, handle, offset, length. */
export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_HEADER_BYTES = 16;
/** Size of a client option header after the handshake: IHAVEOPT, option, length. */
export const OPTION_HEADER_BYTES = 16;
/** The spec's limit on any string (export names, descriptions). */
export const NBD_STRING_BYTES_MAX = 4096;
/** Largest request payload we accept; the spec's conventional maximum block size. */
export const NBD_PAYLOAD_BYTES_MAX = 32 * 1024 * 1024;

/** The server's first message: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(): Buffer {
  const buf = Buffer.alloc(18);
  buf.writeBigUInt64BE(NBD_MAGIC, 0);
  buf.writeBigUInt64BE(NBD_IHAVEOPT, 8);
  buf.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  return buf;
}

export function encodeOptionReply(option: number, replyType: number, payload?: Buffer): Buffer {
  const payloadBytes = payload?.length ?? 0;
  const buf = Buffer.alloc(20 + payloadBytes);
  buf.writeBigUInt64BE(NBD_OPT_REPLY_MAGIC, 0);
  buf.writeUInt32BE(option >>> 0, 8);
  buf.writeUInt32BE(replyType >>> 0, 12);
  buf.writeUInt32BE(payloadBytes, 16);
  if (payload !== undefined) payload.copy(buf, 20);
  return buf;
}

/** NBD_REP_SERVER payload for NBD_OPT_LIST: name length, name, then free text (the description, as qemu-nbd does). */
export function encodeServerEntry(name: string, description: string | undefined): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const descriptionBytes = Buffer.from(description ?? '', 'utf8');
  const buf = Buffer.alloc(4 + nameBytes.length + descriptionBytes.length);
  buf.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(buf, 4);
  descriptionBytes.copy(buf, 4 + nameBytes.length);
  return buf;
}

export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  const buf = Buffer.alloc(12);
  buf.writeUInt16BE(NBD_INFO_EXPORT, 0);
  buf.writeBigUInt64BE(BigInt(sizeBytes), 2);
  buf.writeUInt16BE(transmissionFlags, 10);
  return buf;
}

export function encodeInfoString(infoType: number, text: string): Buffer {
  const textBytes = Buffer.from(text, 'utf8');
  const buf = Buffer.alloc(2 + textBytes.length);
  buf.writeUInt16BE(infoType, 0);
  textBytes.copy(buf, 2);
  return buf;
}

export function encodeInfoBlockSize(minimumBytes: number, preferredBytes: number, maximumBytes: number): Buffer {
  const buf = Buffer.alloc(14);
  buf.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  buf.writeUInt32BE(minimumBytes, 2);
  buf.writeUInt32BE(preferredBytes, 6);
  buf.writeUInt32BE(maximumBytes, 10);
  return buf;
}

/** Reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zero bytes unless the client said NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const buf = Buffer.alloc(noZeroes ? 10 : 134);
  buf.writeBigUInt64BE(BigInt(sizeBytes), 0);
  buf.writeUInt16BE(transmissionFlags, 8);
  return buf;
}

/** Parsed NBD_OPT_INFO / NBD_OPT_GO payload, or undefined when it is malformed. */
export interface InfoRequest {
  readonly name: string;
  readonly infoTypes: readonly number[];
}

export function decodeInfoRequest(data: Buffer): InfoRequest | undefined {
  if (data.length < 6) return undefined;
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > NBD_STRING_BYTES_MAX || 4 + nameBytes + 2 > data.length) return undefined;
  const name = data.toString('utf8', 4, 4 + nameBytes);
  const count = data.readUInt16BE(4 + nameBytes);
  const listStart = 4 + nameBytes + 2;
  if (data.length !== listStart + count * 2) return undefined;
  const infoTypes: number[] = [];
  for (let i = 0; i < count; i++) infoTypes.push(data.readUInt16BE(listStart + i * 2));
  return { name, infoTypes };
}

/**
 * One decoded request header. A class with fixed fields, reused per connection: the handle is kept as
 * the 8 raw bytes (it is opaque to the server and only echoed back).
 */
export class RequestHeader {
  magic = 0;
  commandFlags = 0;
  command = 0;
  /** Offset as a double; exact up to 2^53, and anything larger is out of range for any export anyway. */
  offsetBytes = 0;
  lengthBytes = 0;
  readonly handle = Buffer.alloc(8);

  decode(buf: Buffer, at: number): void {
    this.magic = buf.readUInt32BE(at);
    this.commandFlags = buf.readUInt16BE(at + 4);
    this.command = buf.readUInt16BE(at + 6);
    buf.copy(this.handle, 0, at + 8, at + 16);
    this.offsetBytes = buf.readUInt32BE(at + 16) * 0x1_0000_0000 + buf.readUInt32BE(at + 20);
    this.lengthBytes = buf.readUInt32BE(at + 24);
  }
}

export function encodeSimpleReplyHeader(errorCode: number, handle: Buffer): Buffer {
  const buf = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_BYTES);
  buf.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  buf.writeUInt32BE(errorCode, 4);
  handle.copy(buf, 8, 0, 8);
  return buf;
}

/** Translates an export's failure into the errno an NBD client understands; unknown failures are EIO. */
export function nbdErrorFor(error: unknown): number {
  if (isCairnError(error)) {
    switch (error.errno) {
      case 'EPERM':
      case 'EROFS':
        return NBD_EPERM;
      case 'EINVAL':
        return NBD_EINVAL;
      case 'ENOSPC':
        return NBD_ENOSPC;
      case 'ENOTSUP':
        return NBD_ENOTSUP;
      default:
        return NBD_EIO;
    }
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return NBD_ENOSPC;
  if (code === 'ENOMEM') return NBD_ENOMEM;
  if (code === 'EPERM' || code === 'EROFS' || code === 'EACCES') return NBD_EPERM;
  return NBD_EIO;
}
