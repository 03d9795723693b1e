/**
 * How a decoded protobuf message wrote its fields, beyond their values. In proto2 a field
 * written with its default value (`name: ""`) and a field left out are different messages
 * with the same value; the IR keeps values only. A WireShape, kept beside the IR object the
 * message became, lets the encoder give back the message it read. Made and used by
 * compiler/onnx (presence.ts); passes never need to look at one.
 */
export interface WireShape {
  /** Singular scalar fields the message wrote with their default value ('' or 0). */
  readonly explicit?: readonly string[];
  /** Singular fields the message left out (the encoder drops scalars among them that hold their default). */
  readonly omitted?: readonly string[];
  /** Fields the schema does not know, as raw records (tag included), in the order read. */
  readonly unknown?: readonly Uint8Array[];
  /** Shapes of the nested messages the encoder rebuilds from the same IR object (one per element for lists). */
  readonly nested?: Readonly<Record<string, WireShape | readonly WireShape[]>>;
}

/** The ValueInfoProto shapes of one value, per place it was declared (they may differ). */
export interface ValueInfoShapes {
  readonly input?: WireShape;
  readonly output?: WireShape;
  readonly valueInfo?: WireShape;
}
