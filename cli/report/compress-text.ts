/**
 * What `regroup compress` prints after a run: the before/after table (sides.ts), how each
 * layer was lowered, the lowering check and the pipeline's notes.
 */
import { human, table } from '../format.js';
import { allMaskedDense, type CompressOutcome } from '../pipelines/compress.js';
import { sideBySide } from './sides.js';

export function printCompress(file: string, output: string, o: CompressOutcome): void {
  const rows = sideBySide(o.report).map((r) => [r.metric, r.before, r.after, r.change]);
  console.log(`${file} → ${output} (${o.method}, ${o.seconds.toFixed(1)} s, peak RSS ${o.peakRssMb.toFixed(0)} MB)`);
  console.log(table(['', 'dense', 'compressed', 'change'], rows, ['left', 'right', 'right', 'right']));
  if (o.choices.length > 0) {
    const layers = o.choices.map((c) => [
      c.label,
      c.form,
      c.groups ? String(c.groups) : '—',
      `${human(c.denseMacs)} → ${human(c.macs)}`,
      c.reason,
    ]);
    console.log(
      table(['layer', 'lowered as', 'groups', 'MACs', 'why'], layers, ['left', 'left', 'right', 'right', 'left']),
    );
  }
  if (o.loweringError === 0 && allMaskedDense(o.choices))
    console.log(
      'lowered graph: the masked-dense reference itself (every grouped layer stayed masked dense; compared byte for byte)',
    );
  else if (o.loweringError !== undefined)
    console.log(
      `lowered graph vs masked-dense reference: max |diff| ${o.loweringError.toExponential(2)} of the output scale`,
    );
  for (const note of o.notes) console.log(`note: ${note}`);
}
