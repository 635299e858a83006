/** tokenizer.json uses a feature the fast tokenizer does not implement; use the general one instead. */
export class UnsupportedTokenizerError extends Error {
  override name = 'UnsupportedTokenizerError';
}
