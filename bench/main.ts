/**
 * `make bench`: every figure with its goal, as ratios against baselines measured in the same run.
 */
import { checkBench } from './check.bench.js';
import { countingBench } from './counting.bench.js';
import type { Figure } from './report.js';

const started = performance.now();
const figures: Figure[] = [...(await countingBench()), ...(await checkBench())];
const missed = figures.filter((f) => !f.met);
console.log(`\n${figures.length - missed.length} of ${figures.length} goals met in ${((performance.now() - started) / 1000).toFixed(0)} s${missed.length ? `; not met: ${missed.map((f) => f.label).join(', ')}` : ''}`);
