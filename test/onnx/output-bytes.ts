/** A model's outputs on seeded random inputs, as raw bytes per output name (for exact comparisons). */
import type { Model } from '../../compiler/ir/model.js';
import { randomFeeds } from '../../runtime/inputs.js';
import { createSession, run } from '../../runtime/session.js';

export async function outputBytes(
  source: string | Uint8Array,
  model: Model,
  seed: number,
): Promise<Record<string, Buffer>> {
  const session = await createSession(source, { optimization: 'disabled' });
  try {
    const result = await run(session, randomFeeds(model, { seed, batch: 2 }));
    return Object.fromEntries(
      Object.entries(result).map(([name, t]) => {
        const data = t.data as unknown as ArrayBufferView;
        return [name, Buffer.from(data.buffer, data.byteOffset, data.byteLength)];
      }),
    );
  } finally {
    await session.release();
  }
}
