/**
 * matchNodesByOutput: across an encode → decode round trip (no clone map), every node of a
 * model without node names finds its counterpart by its first output's name; a node whose
 * output is gone, or whose op differs, finds none.
 */
import { describe, expect, it } from 'vitest';
import { matchNodesByOutput } from '../../compiler/ir/match.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { unnamedDetector } from '../../fixtures/models.js';

describe('matchNodesByOutput', () => {
  it('pairs every node of a reloaded unnamed model with its counterpart, by output value', () => {
    const model = unnamedDetector({ repeatedNames: true });
    const reloaded = decodeModel(encodeModel(model).bytes);
    const nodes = model.graph.nodeList();
    const matched = matchNodesByOutput(nodes, reloaded.graph);
    expect(matched.size).toBe(nodes.length);
    const others = reloaded.graph.nodeList();
    expect(nodes.map((n) => others.indexOf(matched.get(n)!))).toEqual(nodes.map((_, i) => i));
  });

  it('leaves out nodes whose output is gone or whose op differs', () => {
    const model = unnamedDetector();
    const reloaded = decodeModel(encodeModel(model).bytes);
    const [firstConv, secondConv] = reloaded.graph.nodeList().filter((n) => n.opType === 'Conv');
    firstConv!.opType = 'ConvTranspose';
    reloaded.graph.renameValue(secondConv!.output(0), 'renamed');
    const convs = model.graph.nodeList().filter((n) => n.opType === 'Conv');
    const matched = matchNodesByOutput(convs, reloaded.graph);
    expect(matched.size).toBe(convs.length - 2);
    expect(matched.has(convs[0]!)).toBe(false);
    expect(matched.has(convs[1]!)).toBe(false);
  });
});
