/** TikTok accepts JPG and PNG up to 3 MB; checked by content before upload (DESIGN §4). */
export const MAX_IMAGE_BYTES = 3 * 1024 * 1024;

export type ImageCheck = { ok: true; type: 'image/jpeg' | 'image/png'; bytes: Uint8Array } | { ok: false; reason: string };

export function sniffImage(b: Uint8Array): 'image/jpeg' | 'image/png' | null {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (b.length >= 8 && png.every((v, i) => b[i] === v)) return 'image/png';
  return null;
}

export async function checkImage(file: Blob): Promise<ImageCheck> {
  if (file.size > MAX_IMAGE_BYTES) {
    return { ok: false, reason: `The image is ${(file.size / 1024 / 1024).toFixed(1)} MB; TikTok accepts up to 3 MB.` };
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  const type = sniffImage(bytes);
  if (!type) return { ok: false, reason: 'Only JPG and PNG images can be sent on TikTok.' };
  return { ok: true, type, bytes };
}

export function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
