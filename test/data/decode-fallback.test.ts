/**
 * The pure-JS fallback, forced by making `import('sharp')` fail as it does on a platform with
 * no prebuilt binary: every image then decodes through jpeg-js/pngjs, and one warning names
 * the reason and the fix.
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import { decodeImage, decodeImageJs, imageDecoder, SMALL_IMAGE_PIXELS } from '../../runtime/data/decode.js';
import { expectRegroupError, jpegBytes, pattern, pngBytes } from './helpers.js';

vi.mock('sharp', () => {
  throw new Error('Could not load the "sharp" module using the linux-x64 runtime (simulated)');
});

const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
afterAll(() => warn.mockRestore());

describe('sharp cannot load', () => {
  it('decodes large images with jpeg-js and pngjs, warning once with the reason and the fix', async () => {
    const side = Math.ceil(Math.sqrt(SMALL_IMAGE_PIXELS)) + 10;
    const image = pattern(side, side);
    const jpeg = jpegBytes(image);
    const decoder = await imageDecoder();
    expect(decoder.name).toBe('jpeg-js+pngjs');
    // (vitest wraps the factory's error in its own message, which becomes the reason here)
    const reason = decoder.detail.replace(/^fallback: /, '');
    expect(reason.length).toBeGreaterThan(10);
    expect(await decodeImage(jpeg, 'big.jpg')).toEqual(decodeImageJs(jpeg, 'big.jpg'));
    expect(await decodeImage(pngBytes(image), 'big.png')).toEqual(image);
    await expectRegroupError(() => decodeImage(jpeg.subarray(0, 200), 'cut.jpg'), 'bad-data', 'cut.jpg');
    expect(warn).toHaveBeenCalledTimes(1);
    const message = String(warn.mock.calls[0]![0]);
    expect(message).toContain('sharp');
    expect(message).toContain(reason);
    expect(message).toContain('jpeg-js');
    expect(message).toContain('npm ci');
  });
});
