/**
 * Names as Linux has them are bytes, not Unicode. Cairn keeps names as strings; a name that is not valid
 * UTF-8 maps each byte of an invalid sequence to the lone surrogate U+DC80..U+DCFF (Python's
 * "surrogateescape"), and back. Valid UTF-8 maps to the same string `toString('utf8')` gives, so every
 * name stored before is unchanged; different byte names never alias one string.
 */

const ESCAPED = /[\uDC80-\uDCFF]/;

/** bytes[start, end) → string; invalid UTF-8 bytes become U+DC80 + byte. */
export function decodeNameBytes(bytes: Buffer, start = 0, end = bytes.length): string {
  const view = bytes.subarray(start, end);
  if (isStrictUtf8(view)) return view.toString('utf8');
  let out = '';
  let i = 0;
  while (i < view.length) {
    const length = validSequenceLength(view, i);
    if (length === 0) {
      out += String.fromCharCode(0xdc00 + (view[i] as number));
      i += 1;
    } else {
      out += view.toString('utf8', i, i + length);
      i += length;
    }
  }
  return out;
}

/** The inverse of decodeNameBytes; other lone surrogates (not from bytes) encode as UTF-8 does (U+FFFD). */
export function encodeNameBytes(name: string): Buffer {
  if (!ESCAPED.test(name)) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let run = '';
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    const previous = i > 0 ? name.charCodeAt(i - 1) : 0;
    if (unit >= 0xdc80 && unit <= 0xdcff && !(previous >= 0xd800 && previous <= 0xdbff)) {
      if (run !== '') parts.push(Buffer.from(run, 'utf8'));
      run = '';
      parts.push(Buffer.from([unit - 0xdc00]));
    } else {
      run += name[i];
    }
  }
  if (run !== '') parts.push(Buffer.from(run, 'utf8'));
  return Buffer.concat(parts);
}

/** Bytes the name takes on disk and on the wire. */
export function nameByteLength(name: string): number {
  return ESCAPED.test(name) ? encodeNameBytes(name).length : Buffer.byteLength(name, 'utf8');
}

function isStrictUtf8(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; ) {
    if ((bytes[i] as number) < 0x80) {
      i++;
      continue;
    }
    const length = validSequenceLength(bytes, i);
    if (length === 0) return false;
    i += length;
  }
  return true;
}

/** Length of the well-formed UTF-8 sequence at i (RFC 3629: no overlongs, surrogates or > U+10FFFF), or 0. */
function validSequenceLength(b: Buffer, i: number): number {
  const b0 = b[i] as number;
  if (b0 < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => i + k < b.length && (b[i + k] as number) >= lo && (b[i + k] as number) <= hi;
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
  if (b0 === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((b0 >= 0xe1 && b0 <= 0xec) || b0 === 0xee || b0 === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (b0 === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (b0 === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b0 >= 0xf1 && b0 <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}
