/**
 * Latency of any structure of a layer shape from the table's measured points.
 *
 * Dense family (group 1), widths cin ∈ [c₀, c₁] and cout ∈ [o₀, o₁] between adjacent
 * measured grid widths, t = (cin − c₀)/(c₁ − c₀), u = (cout − o₀)/(o₁ − o₀):
 *
 *   ms(cin, cout) = (1−t)(1−u)·m(c₀,o₀) + t(1−u)·m(c₁,o₀) + (1−t)u·m(c₀,o₁) + tu·m(c₁,o₁)
 *
 * exact at measured points; between them it is monotone whenever the four corners are
 * (bilinear interpolation has no overshoot). A layer that is grouped in the model (g₀ > 1)
 * interpolates linearly in its group count g at its per-group widths. Uniform groups of a
 * dense layer are looked up exactly (measured at full width only). Anything else — a width
 * outside the measured range, a missing entry — is a RegroupError naming the shape: the table
 * does not cover it, and a guess would mislead the planner.
 */
import { RegroupError } from '../../compiler/errors.js';
import { candidateKey, groupStep, simdBlockOf, widthGrid, type LayerShape, type Structure } from './shapes.js';
import type { LatencyTable } from './table.js';

/** Median milliseconds of `structure` of `shape` at the table's batch (see the file header). */
export function layerMs(table: LatencyTable, shape: LayerShape, structure: Structure): number {
  const exact = table.ms(candidateKey(shape, structure));
  if (exact !== undefined) return exact;
  const block = simdBlockOf(table.key);
  if (shape.group > 1) return groupedMs(table, shape, structure, block);
  if (structure.group !== 1) throw notCovered(shape, structure, 'only measured grouped structures are known');
  const cins = bracket(widthGrid(shape.cin, block), structure.cin);
  const couts = bracket(widthGrid(shape.cout, block), structure.cout);
  if (!cins || !couts) throw notCovered(shape, structure, 'widths outside the measured grid');
  const at = (cin: number, cout: number) => measured(table, shape, { cin, cout, group: 1 });
  const [c0, c1, t] = cins;
  const [o0, o1, u] = couts;
  return (1 - t) * (1 - u) * at(c0, o0) + t * (1 - u) * at(c1, o0) + (1 - t) * u * at(c0, o1) + t * u * at(c1, o1);
}

/** A layer grouped in the model: linear in the group count at the layer's per-group widths. */
function groupedMs(table: LatencyTable, shape: LayerShape, s: Structure, block: number): number {
  const inPerGroup = shape.cin / shape.group;
  const outPerGroup = shape.cout / shape.group;
  if (s.cin !== s.group * inPerGroup || s.cout !== s.group * outPerGroup)
    throw notCovered(shape, s, `a grouped layer is measured at ${inPerGroup}→${outPerGroup} channels per group only`);
  const groups = bracket(widthGrid(shape.group, groupStep(shape, block)), s.group);
  if (!groups) throw notCovered(shape, s, 'group count outside the measured grid');
  const [g0, g1, t] = groups;
  const at = (g: number) => measured(table, shape, { cin: g * inPerGroup, cout: g * outPerGroup, group: g });
  return (1 - t) * at(g0) + t * at(g1);
}

/** Adjacent grid values around x and x's position between them; undefined outside the grid. */
function bracket(grid: readonly number[], x: number): [number, number, number] | undefined {
  if (x < grid[0]! || x > grid[grid.length - 1]!) return undefined;
  const upper = grid.findIndex((g) => g >= x);
  if (grid[upper] === x) return [x, x, 0];
  const lo = grid[upper - 1]!;
  const hi = grid[upper]!;
  return [lo, hi, (x - lo) / (hi - lo)];
}

function measured(table: LatencyTable, shape: LayerShape, s: Structure): number {
  const ms = table.ms(candidateKey(shape, s));
  if (ms === undefined) throw notCovered(shape, s, `'${candidateKey(shape, s)}' was not measured`);
  return ms;
}

function notCovered(shape: LayerShape, s: Structure, why: string): RegroupError {
  const layers = shape.layers.map((l) => l.label).join(', ');
  return new RegroupError(
    'unsupported',
    `the latency table does not cover ${s.cin}→${s.cout} channels, group ${s.group} of '${shape.key}' (${layers}): ${why}; run \`regroup profile\` on the model at this batch first`,
  );
}
