/*
 * The usage page's stylesheet, served as /ui/app.css. Kept in a module rather than a .css file so
 * the build (tsc only) and the image carry it with no copy step. Fonts are the system's: the stack
 * names Korean faces (Noto Sans CJK KR, NanumGothic) so Hangul never falls back to boxes.
 */
export const APP_CSS = String.raw`
:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1c2330; --muted: #667085; --line: #e3e6ea;
  --accent: #2f6fde; --ok: #2e9d5b; --bad: #d4433b; --warn: #d98a1c; --other: #8a8f98;
  font-family: "Noto Sans", "Noto Sans CJK KR", "NanumGothic", "Apple SD Gothic Neo", "Malgun Gothic", system-ui, sans-serif;
  font-size: 15px; line-height: 1.45; color: var(--ink); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 0 0 .6rem; }
h3 { font-size: .98rem; margin: 1rem 0 .4rem; }
small, .muted { color: var(--muted); font-weight: normal; }
code { font-family: "Noto Sans Mono", "DejaVu Sans Mono", monospace; font-size: .9em; }
header.top { display: flex; align-items: center; gap: 1rem; padding: .8rem 1.2rem; background: var(--ink); color: #fff; }
header.top .source { color: #c8cdd6; font-size: .85rem; flex: 1; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(28rem, 1fr)); gap: 1rem; padding: 1rem 1.2rem; max-width: 110rem; margin: 0 auto; }
main.login { display: block; max-width: 26rem; margin: 4rem auto; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.2rem; }
#user { grid-column: 1 / -1; }
form.inline { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
form.stack, main.login form { display: flex; flex-direction: column; gap: .5rem; }
input, select, textarea, button { font: inherit; }
input, select, textarea { padding: .35rem .5rem; border: 1px solid #c5cad3; border-radius: 5px; background: #fff; color: inherit; }
textarea { resize: vertical; }
button { padding: .35rem .9rem; border: 0; border-radius: 5px; background: var(--accent); color: #fff; cursor: pointer; }
button.quiet { background: transparent; border: 1px solid #8a93a3; color: #fff; }
.error { color: var(--bad); margin: 0; }
a { color: var(--accent); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-size: .8rem; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .02em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.exhausted td { background: #fdecea; }
tr.exhausted td:first-child { box-shadow: inset 3px 0 0 var(--bad); font-weight: 600; }
svg.bar .track { fill: #e9ecf1; }
svg.bar .fill { fill: var(--accent); }
svg.bar .fill.full { fill: var(--bad); }
svg.bar .fill.high { fill: var(--warn); }
svg.bar .shadow { stroke: #6b4fbb; stroke-width: 2; }
.rates { display: flex; gap: 1.5rem; flex-wrap: wrap; margin-bottom: .5rem; }
.rate .value { font-size: 1.6rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.rate .label { font-size: .8rem; color: var(--muted); }
.rate.allowed .value { color: var(--ok); }
.rate.denied .value { color: var(--bad); }
.rate.abandoned .value { color: var(--warn); }
.rate.error .value { color: var(--other); }
.sparkline svg { width: 100%; height: 70px; display: block; }
.sparkline .axis { stroke: var(--line); }
.sparkline polyline { fill: none; stroke-width: 2; }
.sparkline .allowed { stroke: var(--ok); }
.sparkline .denied { stroke: var(--bad); }
.sparkline .abandoned { stroke: var(--warn); }
.sparkline .error { stroke: var(--other); }
.model { border-top: 1px solid var(--line); margin-top: .8rem; padding-top: .2rem; }
.summary { display: flex; gap: 1.2rem; flex-wrap: wrap; font-size: .9rem; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 999px; font-size: .8rem; background: #fdecea; color: var(--bad); }
.provenance { font-size: .82rem; color: var(--muted); }
.count-figures { display: flex; gap: 1.5rem; flex-wrap: wrap; margin-top: .8rem; }
.count-figures .value { font-size: 1.5rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.count-figures .label { font-size: .8rem; color: var(--muted); }
`;
