import { createHash, timingSafeEqual } from 'node:crypto';

/** Whether `token` hashes to the configured admin token digest (compared in constant time). */
export function isAdminToken(token: string, expectedSha256Hex: string): boolean {
  const digest = createHash('sha256').update(token, 'utf8').digest();
  return timingSafeEqual(digest, Buffer.from(expectedSha256Hex, 'hex'));
}
