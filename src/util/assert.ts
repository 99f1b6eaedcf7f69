/**
 * Always-on invariant checks, as OpenZFS's VERIFY. A broken invariant is a bug: it stops the operation
 * with an InvariantError and never lets a layer write garbage. Operating errors (bad checksum, no space)
 * are CairnErrors instead (see errors.ts).
 */
export class InvariantError extends Error {
  override name = 'InvariantError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
