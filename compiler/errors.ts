/** Stable error codes; the CLI prints `error[code]: message` and exits non-zero. */
export type ErrorCode =
  | 'bad-model'
  | 'bad-tensor'
  | 'bad-data'
  | 'external-data'
  | 'io'
  | 'invalid-ir'
  | 'usage'
  | 'runtime'
  | 'provider'
  /** A target (MACs, latency) no structure the method can make reaches. */
  | 'unreachable'
  | 'unsupported';

/** An error regroup raises on purpose: bad input or a broken invariant, with a fix in the message. */
export class RegroupError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RegroupError';
    this.code = code;
  }
}
