#!/usr/bin/env node
// Every relative link of README.md and docs/*.md names a file that exists and, after '#', a heading (or an
// id/name anchor) of that file, with GitHub's heading ids. Part of `npm run lint`; exit status 1 with one line
// per broken link.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const docs = [
  'README.md',
  ...readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => path.join('docs', f)),
];

/** Markdown without its fenced code blocks and inline code (links there are not links), its lines kept. */
const prose = (text) =>
  text
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, (block) => block.replace(/[^\n]/g, ''))
    .replace(/`[^`\n]*`/g, '');

/** GitHub's id of a heading: lower case, punctuation dropped, spaces as hyphens, -1, -2... for repeats. */
function anchorsOf(file) {
  const seen = new Map();
  const ids = new Set();
  for (const m of prose(readFileSync(file, 'utf8')).matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const text = m[1].replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/<[^>]+>/g, '');
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M} _-]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  }
  for (const m of readFileSync(file, 'utf8').matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) ids.add(m[1]);
  return ids;
}

const problems = [];
for (const doc of docs) {
  const file = path.join(root, doc);
  const text = prose(readFileSync(file, 'utf8'));
  for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    const link = m[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // https:, mailto:, ...
    const [target, anchor] = link.split('#', 2);
    const line = text.slice(0, m.index).split('\n').length;
    const targetFile = target ? path.resolve(path.dirname(file), decodeURI(target)) : file;
    if (!existsSync(targetFile)) {
      problems.push(`${doc}:${line}: ${link}: ${path.relative(root, targetFile)} does not exist`);
      continue;
    }
    if (anchor && targetFile.endsWith('.md') && !anchorsOf(targetFile).has(decodeURIComponent(anchor))) {
      problems.push(`${doc}:${line}: ${link}: ${path.relative(root, targetFile)} has no heading #${anchor}`);
    }
  }
}
for (const p of problems) console.error(`check-links: ${p}`);
process.exitCode = problems.length > 0 ? 1 : 0;
