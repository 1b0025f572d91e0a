// Two builds of the app compared pair by pair (docs/web.md, "Judging a change to the join").
//
//   node tests/bench-join/pairs.js A.json:after:before B.json:before:after
//
// Each argument is a bench-join raw file (`--app2` run) and the names of its `app` and
// `app2` kinds. Within one run and one N the two kinds ran back to back under the same
// load, so each (run, N) gives one pair; the ratio is the first name's time over the
// second's, for the name that comes first on the command line ("after" above). Running
// the benchmark twice with the builds swapped (as above) puts each build as often in each
// position of the run's order, which matters on a loaded machine. It prints, per N and in
// all: the pairs' ratios, their median, how many pairs the first build was slower in, and
// the reference page's own spread over the same runs (its median ratio of a run to the
// next: what the machine alone moves a page by).

import fs from 'node:fs';

const args = process.argv.slice(2);
if (args.length === 0) {
  console.error('usage: node tests/bench-join/pairs.js FILE:appName:app2Name ...');
  process.exit(2);
}

/** @param {number[]} xs */
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** @type {string | null} */
let first = null;
/** @type {Map<number, number[]>} per N, first/second */
const ratios = new Map();
/** @type {Map<number, number[]>} per N, the reference's run-to-run ratio (>= 1) */
const refSteps = new Map();
for (const arg of args) {
  const [file, appName, app2Name] = arg.split(':');
  if (!file || !appName || !app2Name) throw new Error(`expected FILE:appName:app2Name, got ${arg}`);
  first ??= appName;
  const flip = appName !== first;
  const data = JSON.parse(fs.readFileSync(file, 'utf8'));
  /** @type {Map<string, number>} */
  const total = new Map();
  for (const r of data.results) if (typeof r.totalMs === 'number') total.set(`${r.kind}/${r.n}/${r.run}`, r.totalMs);
  for (const n of data.meta.cases) {
    /** @type {number[]} */
    const refs = [];
    for (let run = 0; run < data.meta.runs; run++) {
      const a = total.get(`app/${n}/${run}`);
      const b = total.get(`app2/${n}/${run}`);
      const ref = total.get(`ref/${n}/${run}`);
      if (ref !== undefined) refs.push(ref);
      if (a === undefined || b === undefined) continue;
      const list = ratios.get(n) ?? [];
      list.push(flip ? b / a : a / b);
      ratios.set(n, list);
    }
    const steps = refSteps.get(n) ?? [];
    for (let i = 1; i < refs.length; i++) steps.push(Math.max(refs[i], refs[i - 1]) / Math.min(refs[i], refs[i - 1]));
    refSteps.set(n, steps);
  }
}

const second = args[0].split(':')[2];
console.log(`${first} / ${second}, pair by pair (same run, same N)`);
console.log('| N | pairs | ratios | median | slower in | reference run-to-run (median) |');
console.log('|---:|---:|---|---:|---:|---:|');
/** @type {number[]} */
const all = [];
/** @type {number[]} */
const allRef = [];
for (const [n, list] of [...ratios].sort((a, b) => a[0] - b[0])) {
  all.push(...list);
  const ref = refSteps.get(n) ?? [];
  allRef.push(...ref);
  const slower = list.filter((r) => r > 1).length;
  console.log(`| ${n} | ${list.length} | ${list.map((r) => r.toFixed(2)).join(' ')} | ${median(list).toFixed(2)}x | ` +
    `${slower} of ${list.length} | ${ref.length ? `${median(ref).toFixed(2)}x` : '-'} |`);
}
const slower = all.filter((r) => r > 1).length;
console.log(`| all | ${all.length} | | ${median(all).toFixed(2)}x | ${slower} of ${all.length} | ` +
  `${allRef.length ? `${median(allRef).toFixed(2)}x` : '-'} |`);
