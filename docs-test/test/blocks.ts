import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** A fenced code block of a markdown page. */
export interface CodeBlock {
  /** The page, relative to the repository root. */
  readonly page: string;
  /** 1-based line of the block's first code line in the page. */
  readonly line: number;
  readonly lang: string;
  readonly code: string;
  /** The `<!-- doc-test: … -->` comment right before the fence, if any. */
  readonly mark: Mark | undefined;
}

/**
 * `fragment`: a piece of a larger program on purpose. It is type-checked, not run, as the
 * continuation of the nearest block before it on its page that is not marked.
 * `skip`: can be neither run nor type-checked; the reason is required.
 */
export type Mark =
  | { readonly kind: 'fragment' }
  | { readonly kind: 'skip'; readonly reason: string };

/** The languages whose blocks run: every other block (sh, diff, sql, text) is left alone. */
export const RUN_LANGS: ReadonlySet<string> = new Set(['js', 'mjs', 'ts']);

const FENCE = /^```(\S*)\s*$/;
const MARK = /^<!--\s*doc-test:\s*(\S+)\s*(.*?)\s*-->$/;

/** The pages whose code blocks must run: the root README, every package README, docs/*.md. */
export function documentedPages(root: string): string[] {
  const packages = readdirSync(join(root, 'packages'), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => `packages/${entry.name}/README.md`)
    .filter((page) => readdirSync(join(root, page, '..')).includes('README.md'));
  const docs = readdirSync(join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`);
  return ['README.md', ...packages.sort(), ...docs.sort()];
}

/** Every fenced block of `markdown`, in order, with the doc-test mark before it. */
export function codeBlocks(page: string, markdown: string): CodeBlock[] {
  const lines = markdown.split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] ?? '');
    if (open === null) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end] !== '```') end++;
    if (end === lines.length) throw new Error(`${page}:${i + 1}: code block never closed`);
    blocks.push({
      page,
      line: start + 1,
      lang: open[1] ?? '',
      code: `${lines.slice(start, end).join('\n')}\n`,
      mark: markBefore(page, lines, i),
    });
    i = end;
  }
  return blocks;
}

export function readBlocks(root: string, page: string): CodeBlock[] {
  return codeBlocks(page, readFileSync(join(root, page), 'utf8'));
}

function markBefore(page: string, lines: string[], fence: number): Mark | undefined {
  let i = fence - 1;
  while (i >= 0 && lines[i]?.trim() === '') i--;
  const match = MARK.exec(lines[i]?.trim() ?? '');
  if (match === null) return undefined;
  const [, kind, reason = ''] = match;
  if (kind === 'fragment' && reason === '') return { kind };
  if (kind === 'skip' && reason !== '') return { kind, reason };
  throw new Error(
    `${page}:${i + 1}: unknown doc-test mark; write <!-- doc-test: fragment --> or <!-- doc-test: skip <why> -->`,
  );
}
