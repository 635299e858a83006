import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Real text for benchmarks, never repeated sentences: the Korean/English documents this project
 * started from (../shared/corpus, when present beside the clone) and the English READMEs of the
 * packages under node_modules (which every clone has), each file once, split into prompt-sized
 * pieces at paragraph boundaries. Deterministic: files sorted, duplicates (by content) dropped.
 */
export interface Corpus {
  readonly pieces: readonly string[];
  readonly koreanPieces: number;
  readonly bytes: number;
}

const SHARED_CORPUS = '../shared/corpus';
const PIECE_BYTES = 4096;

export function loadCorpus(maxBytes = 4 * 1024 * 1024): Corpus {
  const korean = existsSync(SHARED_CORPUS)
    ? readdirSync(SHARED_CORPUS)
        .filter((f) => f.endsWith('.md') && f !== 'README.md')
        .sort()
        .map((f) => readFileSync(join(SHARED_CORPUS, f), 'utf8'))
    : [];
  const seen = new Set<string>();
  const english: string[] = [];
  for (const file of readmes('node_modules').sort()) {
    const text = readFileSync(file, 'utf8');
    const digest = createHash('sha1').update(text).digest('hex');
    if (text.length < 2048 || seen.has(digest)) continue;
    seen.add(digest);
    english.push(text);
  }
  const koreanPieces = korean.flatMap(split);
  const englishPieces = english.flatMap(split);
  // Korean documents first and spread through the English ones, so every part of a run sees both.
  const pieces: string[] = [];
  let bytes = 0;
  const step = Math.max(1, Math.floor(maxBytes / PIECE_BYTES / Math.max(1, koreanPieces.length)));
  let taken = 0;
  const add = (piece: string) => {
    pieces.push(piece);
    bytes += Buffer.byteLength(piece);
  };
  for (let i = 0; i < englishPieces.length && bytes < maxBytes; i++) {
    if (i % step === 0 && taken < koreanPieces.length) add(koreanPieces[taken++]!);
    add(englishPieces[i]!);
  }
  return { pieces, koreanPieces: taken, bytes };
}

function readmes(dir: string, depth = 0): string[] {
  if (depth > 4) return [];
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    let stat;
    try {
      stat = statSync(path);
    } catch {
      continue;
    }
    if (stat.isDirectory()) out.push(...readmes(path, depth + 1));
    else if (/^readme\.md$/i.test(entry)) out.push(path);
  }
  return out;
}

/** Paragraph-aligned pieces of about PIECE_BYTES. */
function split(text: string): string[] {
  const pieces: string[] = [];
  let current = '';
  for (const paragraph of text.split(/\n\s*\n/)) {
    if (current && Buffer.byteLength(current) + Buffer.byteLength(paragraph) > PIECE_BYTES) {
      pieces.push(current);
      current = '';
    }
    current += (current ? '\n\n' : '') + paragraph;
  }
  if (current.trim()) pieces.push(current);
  return pieces;
}
