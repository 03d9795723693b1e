/**
 * Predicted latency of a pruned model from measured per-layer latencies (the runtime's latency
 * table, runtime/latency/; passes never run models, so the caller supplies the lookup).
 *
 * A layer with weights (Conv, Gemm, MatMul) runs in t_l(c_in, c_out) at the widths a removal
 * set leaves it (its weight's in- and out-channel touches, compiler/analysis/channel-groups);
 * everything else — pooling, Add, reshapes, layout conversions, the stem's input — is a fixed
 * time F that pruning does not remove (measured: whole model − Σ dense layers). So
 *
 *   T(removed) = F + Σ_l t_l(kept_in(l), kept_out(l)),
 *
 * and the marginal saving of a channel group g — what removing one block of b channels saves,
 * every other width dense — is
 *
 *   s_g = (1/b) Σ_{l touching g} [t_l(dense) − t_l(g's side narrowed by b)].
 *
 * A layer the table cannot price keeps its dense time scaled by its kept MACs fraction.
 */
import type { ChannelAnalysis, ChannelGroup, Touch } from '../compiler/analysis/channel-groups.js';
import type { CostReport } from '../compiler/analysis/cost.js';
import type { Node } from '../compiler/ir/node.js';

/** Measured latency of single layers at other widths; the runtime builds it from its table. */
export interface LayerLatency {
  /** Milliseconds of `node` with `cin` input and `cout` output channels, or undefined when not measured. */
  layerMs(node: Node, cin: number, cout: number): number | undefined;
  /** Milliseconds of the rest of the model (ops without weights), which pruning does not remove. */
  readonly fixedMs: number;
}

interface PricedLayer {
  readonly node: Node;
  readonly in?: Touch;
  readonly out?: Touch;
  /** Conv groups: a grouped conv's in-touch covers one group's slice of its inputs. */
  readonly groups: number;
  /** Dense input and output channels (a depthwise conv's inputs follow its outputs). */
  readonly cin: number;
  readonly cout: number;
  readonly depthwise: boolean;
  readonly denseMs: number;
  readonly denseMacs: number;
}

/** T(removed) and marginal savings per channel group; see the file header. */
export class LatencyPricing {
  /** Predicted milliseconds of the unpruned model. */
  readonly before: number;
  readonly #layers: PricedLayer[] = [];

  constructor(
    private readonly analysis: ChannelAnalysis,
    cost: CostReport,
    private readonly latency: LayerLatency,
  ) {
    for (const layer of cost.layers) {
      if (layer.macs <= 0) continue;
      const node = layer.node;
      const touch = (role: string) =>
        analysis.touches.find((t) => t.node === node && t.inputIndex === 1 && t.role === role);
      const [inTouch, outTouch] = [touch('in-channels'), touch('out-channels')];
      const weight = analysis.shapes.typeOf(node.inputs[1]!)?.shape ?? [];
      const dim = (i: number) => (typeof weight[i] === 'number' ? weight[i] : 0);
      const groups = Math.max(1, node.getInt('group', 1));
      const gemm = node.opType !== 'Conv';
      const cout = gemm ? dim(node.opType === 'Gemm' && transB(node) ? 0 : 1) : dim(0);
      const cin = gemm ? dim(node.opType === 'Gemm' && transB(node) ? 1 : 0) : dim(1) * groups;
      const depthwise = !gemm && groups > 1 && groups === cin && dim(1) === 1;
      const denseMs = latency.layerMs(node, cin, cout);
      this.#layers.push({
        node,
        in: inTouch,
        out: outTouch,
        groups,
        cin,
        cout,
        depthwise,
        denseMs: denseMs ?? NaN,
        denseMacs: layer.macs,
      });
    }
    const unpriced = this.#layers.filter((l) => Number.isNaN(l.denseMs));
    if (unpriced.length > 0) {
      // Unmeasured layers: price them as the measured ones run per MAC.
      const measured = this.#layers.filter((l) => !Number.isNaN(l.denseMs));
      const msPerMac =
        measured.reduce((a, l) => a + l.denseMs, 0) /
        Math.max(
          1,
          measured.reduce((a, l) => a + l.denseMacs, 0),
        );
      this.#layers = this.#layers.map((l) =>
        Number.isNaN(l.denseMs) ? { ...l, denseMs: l.denseMacs * msPerMac } : l,
      ) as PricedLayer[];
    }
    this.before = this.evaluate(new Set());
  }

  /** Predicted milliseconds after removing `removed` (coupled channels, root elements). */
  evaluate(removed: ReadonlySet<number>): number {
    let total = this.latency.fixedMs;
    for (const layer of this.#layers) total += this.#layerAt(layer, removed);
    return total;
  }

  /** Milliseconds saved per channel by removing `block` channels of `group` (every other width dense). */
  savingPerChannel(group: ChannelGroup, block: number): number {
    const roots = [...group.roots]
      .filter((r) => this.analysis.pinReasons(r).length === 0)
      .slice(0, Math.max(1, Math.min(block, group.channels - 1)));
    if (roots.length === 0) return 0;
    const removed = new Set(roots.map((r) => this.analysis.root(r)));
    let saved = 0;
    for (const layer of this.#layers) {
      const touches = [layer.in, layer.out].some(
        (t) => t && [...t.elems].some((e) => removed.has(this.analysis.root(e))),
      );
      if (touches) saved += layer.denseMs - this.#layerAt(layer, removed);
    }
    return saved / roots.length;
  }

  #layerAt(layer: PricedLayer, removed: ReadonlySet<number>): number {
    const kept = (t: Touch | undefined, dense: number) => {
      if (!t) return dense;
      let n = 0;
      for (const e of t.elems) if (!removed.has(this.analysis.root(e))) n++;
      return (dense * n) / t.elems.length;
    };
    const cout = kept(layer.out, layer.cout);
    const cin = layer.depthwise ? cout : kept(layer.in, layer.cin);
    if (cin === layer.cin && cout === layer.cout) return layer.denseMs;
    const measured = this.latency.layerMs(layer.node, cin, cout);
    if (measured !== undefined) return measured;
    return layer.denseMs * (layer.depthwise ? cout / layer.cout : (cin / layer.cin) * (cout / layer.cout));
  }
}

/** Gemm's transB attribute (weight stored [out, in]). */
function transB(node: Node): boolean {
  return node.getInt('transB', 0) === 1;
}
