import { endianness } from 'node:os';

const BIG_ENDIAN = endianness() === 'BE';

/**
 * A reusable copy of a string's UTF-16 code units. Scanning and hashing a Uint16Array is about twice
 * as fast as charCodeAt, which checks the string's representation on every call; and Buffer's native
 * write copies a string (even one built by concatenation) many times faster than a charCodeAt loop.
 */
export class CodeUnitBuffer {
  private units = new Uint16Array(1024);
  private bytes = Buffer.from(this.units.buffer);

  /** The code units of `text` (lone surrogates included), valid until the next call. */
  of(text: string): Uint16Array {
    const length = text.length;
    if (length > this.units.length) {
      this.units = new Uint16Array(2 ** Math.ceil(Math.log2(length)));
      this.bytes = Buffer.from(this.units.buffer);
    }
    this.bytes.write(text, 0, 'utf16le');
    if (BIG_ENDIAN) this.bytes.subarray(0, 2 * length).swap16();
    return this.units.subarray(0, length);
  }
}
