/**
 * allocate-cp: the budget goes where the measured cost per MAC saved is least, looking past a
 * bump in a layer's cost curve; the overshooting last step is refined to the budget; an
 * unreachable budget is reported, not hidden.
 */
import { describe, expect, it } from 'vitest';
import { allocateCps, type AllocationLayer } from '../../passes/allocate-cp.js';

/** A layer whose MACs fall linearly from `dense` at cp 0 to 0 at cp 100. */
function linear(node: string, dense: number, costs: Record<number, number>): AllocationLayer<string> {
  const macsAt = (cp: number) => dense * (1 - cp / 100);
  return {
    node,
    macsAt,
    levels: Object.entries(costs).map(([cp, cost]) => ({ cp: Number(cp), macs: macsAt(Number(cp)), cost })),
  };
}

describe('allocateCps', () => {
  it('cuts the insensitive layer and spares the sensitive one', () => {
    const layers = [
      linear('robust', 100, { 0: 0, 50: 0.01, 90: 0.05 }),
      linear('fragile', 100, { 0: 0, 50: 1, 90: 5 }),
    ];
    const a = allocateCps(layers, 0, 150);
    expect(a.targetMet).toBe(true);
    expect(a.cps.get('fragile')).toBe(0);
    expect(a.cps.get('robust')).toBeCloseTo(50, 3);
    expect(a.macs).toBeLessThanOrEqual(150);
    expect(a.macs).toBeGreaterThan(149.99);
  });

  it('looks past a bump in the cost curve instead of taking the next level only', () => {
    // Level by level, 'bumpy' costs 5 for 10 MACs (0.5 per MAC) and 'steady' 30 for 80
    // (0.375): a next-level greedy cuts 'steady'. Two levels on, 'bumpy' saves 90 MACs for
    // 5.1 (0.057 per MAC), which is the cheaper way to the budget.
    const bumpy: AllocationLayer<string> = {
      node: 'bumpy',
      levels: [
        { cp: 0, macs: 100, cost: 0 },
        { cp: 10, macs: 90, cost: 5 },
        { cp: 20, macs: 10, cost: 5.1 },
      ],
    };
    const steady: AllocationLayer<string> = {
      node: 'steady',
      levels: [
        { cp: 0, macs: 100, cost: 0 },
        { cp: 10, macs: 20, cost: 30 },
      ],
    };
    const a = allocateCps([bumpy, steady], 0, 120);
    expect(Object.fromEntries(a.cps)).toEqual({ bumpy: 20, steady: 0 });
    expect(a.cost).toBeCloseTo(5.1, 9);
    expect(a.macs).toBe(110);
  });

  it('counts the fixed MACs, and says when even the highest levels do not fit', () => {
    const layers = [linear('a', 100, { 0: 0, 50: 1 }), linear('b', 100, { 0: 0, 50: 1 })];
    const fits = allocateCps(layers, 100, 250);
    expect(fits.targetMet).toBe(true);
    expect(fits.macs).toBeLessThanOrEqual(250);
    const out = allocateCps(layers, 100, 150);
    expect(out.targetMet).toBe(false);
    expect(Object.fromEntries(out.cps)).toEqual({ a: 50, b: 50 });
    expect(out.macs).toBe(200);
  });

  it('changes nothing when the dense model already fits', () => {
    const a = allocateCps([linear('a', 100, { 0: 0, 50: 1 })], 0, 100);
    expect(a.cps.get('a')).toBe(0);
    expect(a.cost).toBe(0);
  });
});
