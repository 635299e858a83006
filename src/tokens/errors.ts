/** tokenizer.json uses a feature the fast tokenizer does not implement; use the general one instead. */
export class UnsupportedTokenizerError extends Error {
  override name = 'UnsupportedTokenizerError';
}

/** The model's tokenizer could not be loaded; requests for it are refused rather than miscounted. */
export class TokenizerUnavailableError extends Error {
  override name = 'TokenizerUnavailableError';
}
