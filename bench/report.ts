/** One printed figure with its goal, as `make bench` reports it. */
export interface Figure {
  readonly label: string;
  readonly met: boolean;
}

export function header(text: string): void {
  console.log(`\n# ${text}`);
}

export function line(label: string, value: string, note = ''): void {
  console.log(`  ${label.padEnd(58)} ${value.padStart(14)}   ${note}`);
}

/** Prints a measured figure against its goal and says whether it is met. */
export function goal(label: string, value: number, op: '>=' | '<=', target: number, unit: string, note = ''): Figure {
  const met = op === '>=' ? value >= target : value <= target;
  const shown = `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ${unit}`;
  console.log(`  ${label.padEnd(58)} ${shown.padStart(14)}   goal ${op} ${target} ${unit}: ${met ? 'met' : 'NOT MET'}${note ? `   (${note})` : ''}`);
  return { label, met };
}
