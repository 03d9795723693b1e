/**
 * Progress for long steps: a redrawn line with rate and ETA on a terminal, a few plain
 * lines otherwise (CI logs), nothing with --quiet or --json.
 */
export interface Progress {
  /** Report `done` items; `total` may be given when it becomes known after the start. */
  tick(done: number, total?: number): void;
  done(message?: string): void;
}

export function progress(
  label: string,
  total: number,
  options: { quiet?: boolean; stream?: NodeJS.WriteStream } = {},
): Progress {
  const stream = options.stream ?? process.stderr;
  if (options.quiet) return { tick() {}, done() {} };
  const tty = stream.isTTY === true && process.env.CI !== 'true';
  const start = Date.now();
  let lastPrinted = -1;
  const render = (done: number) => {
    const elapsed = (Date.now() - start) / 1000;
    if (elapsed < 0.5 || done === 0) return `${label} ${done}/${total}`;
    const rate = done / elapsed;
    const eta = (total - done) / rate;
    return `${label} ${done}/${total} (${rate.toFixed(1)}/s, ETA ${eta.toFixed(0)}s)`;
  };
  return {
    tick(done: number, newTotal?: number) {
      if (newTotal !== undefined) total = newTotal;
      if (tty) {
        stream.write(`\r${render(done)}\x1b[K`);
        return;
      }
      const quarter = Math.floor((4 * done) / Math.max(total, 1));
      if (quarter !== lastPrinted && done < total) {
        lastPrinted = quarter;
        stream.write(`${render(done)}\n`);
      }
    },
    done(message?: string) {
      const text = message ?? `${label} done in ${((Date.now() - start) / 1000).toFixed(1)}s`;
      stream.write(tty ? `\r${text}\x1b[K\n` : `${text}\n`);
    },
  };
}
