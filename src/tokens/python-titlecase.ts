/**
 * Python's titlecase mapping of one character (str.title(), str.capitalize()). JavaScript has no
 * titlecase; it equals toUpperCase() except for the characters below, listed from Python 3.11
 * (Unicode 14) as those whose c.title() differs from c.upper().
 */
export function titlecase(char: string): string {
  const code = char.codePointAt(0)!;
  // Georgian Mkhedruli: uppercase is Mtavruli, titlecase is the letter itself.
  if (code >= 0x10d0 && code <= 0x10ff) return char;
  // Greek with ypogegrammeni titlecases to the prosgegrammeni letter 8 code points on.
  if (code >= 0x1f80 && code <= 0x1faf) return String.fromCodePoint(code | 8);
  return TITLECASE_EXCEPTIONS.get(code) ?? char.toUpperCase();
}

const TITLECASE_EXCEPTIONS = new Map<number, string>([
  [0xdf, 'Ss'],
  [0x1c4, '\u01c5'],
  [0x1c5, '\u01c5'],
  [0x1c6, '\u01c5'],
  [0x1c7, '\u01c8'],
  [0x1c8, '\u01c8'],
  [0x1c9, '\u01c8'],
  [0x1ca, '\u01cb'],
  [0x1cb, '\u01cb'],
  [0x1cc, '\u01cb'],
  [0x1f1, '\u01f2'],
  [0x1f2, '\u01f2'],
  [0x1f3, '\u01f2'],
  [0x587, '\u0535\u0582'],
  [0x1fb2, '\u1fba\u0345'],
  [0x1fb3, '\u1fbc'],
  [0x1fb4, '\u0386\u0345'],
  [0x1fb7, '\u0391\u0342\u0345'],
  [0x1fbc, '\u1fbc'],
  [0x1fc2, '\u1fca\u0345'],
  [0x1fc3, '\u1fcc'],
  [0x1fc4, '\u0389\u0345'],
  [0x1fc7, '\u0397\u0342\u0345'],
  [0x1fcc, '\u1fcc'],
  [0x1ff2, '\u1ffa\u0345'],
  [0x1ff3, '\u1ffc'],
  [0x1ff4, '\u038f\u0345'],
  [0x1ff7, '\u03a9\u0342\u0345'],
  [0x1ffc, '\u1ffc'],
  [0xfb00, 'Ff'],
  [0xfb01, 'Fi'],
  [0xfb02, 'Fl'],
  [0xfb03, 'Ffi'],
  [0xfb04, 'Ffl'],
  [0xfb05, 'St'],
  [0xfb06, 'St'],
  [0xfb13, '\u0544\u0576'],
  [0xfb14, '\u0544\u0565'],
  [0xfb15, '\u0544\u056b'],
  [0xfb16, '\u054e\u0576'],
  [0xfb17, '\u0544\u056d'],
]);
