// Pure text formatting for the status bar item and the panel (no DOM, no JupyterLab: unit-tested).

import type { ConnectionState } from './connection';
import { DEFAULT_MODEL, type LmnbStatus, type LoadedModel } from './protocol';

/** What the status item shows; also its data-state attribute (a stable hook for browser tests). */
export type StatusKind =
  | 'connecting'
  | 'not-loaded'
  | 'no-model'
  | 'idle'
  | 'loading'
  | 'generating'
  | 'serving';

const SEP = ' · ';
const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** Decimal units, as model files are listed on Hugging Face: 412 MB, 1.5 GB. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) {
    return '?';
  }
  let value = bytes;
  let unit = 0;
  // 999.6 MB would round to "1000 MB": switch units before rounding does.
  while (value >= 999.5 && unit < UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  if (unit === 0) {
    return `${Math.round(value)} B`;
  }
  return `${value < 9.95 ? value.toFixed(1) : Math.round(value)} ${UNITS[unit]}`;
}

/** "97.3 tok/s"; null when no request has finished yet (the part is then left out). */
export function formatRate(tokensPerSecond: number | null): string | null {
  if (tokensPerSecond === null || !Number.isFinite(tokensPerSecond) || tokensPerSecond < 0) {
    return null;
  }
  const value =
    tokensPerSecond < 999.95 ? tokensPerSecond.toFixed(1) : Math.round(tokensPerSecond).toString();
  return `${value} tok/s`;
}

/** Floor, so that 99.9 % does not read "100%" before loading has finished. */
export function formatPercent(fraction: number): string {
  return `${Math.floor(Math.min(1, Math.max(0, fraction)) * 100)}%`;
}

/** A model may be a path or a repo id: show its last segment, without ".gguf". */
export function displayName(model: string): string {
  const last = model.split(/[\\/]/).filter(Boolean).pop() ?? model;
  return last.replace(/\.gguf$/i, '');
}

/** Parameters as typed in a cell: integers plain, floats without trailing zeros. */
export function formatNumber(value: number): string {
  return Number.isInteger(value) ? value.toString() : Number(value.toFixed(4)).toString();
}

/** "default" is the default model; any other model is shown with the name it is loaded under. */
export function loadedLabel(model: LoadedModel): string {
  return model.name === DEFAULT_MODEL ? 'default' : `as ${model.name}`;
}

/** One loaded model for the tooltip: "gemma-3-270m (as g): 250 MB · generating". */
export function formatLoaded(model: LoadedModel): string {
  const parts = [`${model.model} (${loadedLabel(model)}): ${formatBytes(model.model_bytes)}`];
  if (model.state !== 'idle') {
    parts.push(model.state);
  }
  if (model.on_demand) {
    parts.push('loaded on demand');
  }
  return parts.join(SEP);
}

/**
 * The default model's state, except that a model generating anywhere in the kernel shows
 * "generating", and models loaded under a name keep it from reading "no model".
 */
export function statusKind(connection: ConnectionState, status: LmnbStatus | null): StatusKind {
  if (connection === 'not-loaded') {
    return 'not-loaded';
  }
  if (connection === 'connecting' || status === null) {
    return 'connecting';
  }
  if (status.state === 'loading') {
    return 'loading';
  }
  if (status.state === 'generating' || status.models.some(m => m.state === 'generating')) {
    return 'generating';
  }
  if ((status.model === null || status.state === 'no model') && status.models.length === 0) {
    return 'no-model';
  }
  return status.server_url !== null ? 'serving' : 'idle';
}

/** The status bar text, e.g. "SmolLM2-135M-Instruct · generating · 97.3 tok/s · 412 MB". */
export function formatStatus(connection: ConnectionState, status: LmnbStatus | null): string {
  const kind = statusKind(connection, status);
  if (kind === 'connecting') {
    return 'lmnb: connecting…';
  }
  if (kind === 'not-loaded' || status === null) {
    return 'lmnb: not loaded';
  }
  if (kind === 'no-model') {
    return 'lmnb: no model';
  }
  if (kind === 'loading') {
    const name = status.model !== null ? displayName(status.model) : 'model';
    const progress = status.load_progress !== null ? ` ${formatPercent(status.load_progress)}` : '';
    return `Loading ${name}…${progress}`;
  }
  // The default model (else the first loaded), and how many more are loaded beside it.
  const first = status.model ?? status.models[0]?.model ?? null;
  const others = Math.max(0, status.models.length - 1);
  const name = (first !== null ? displayName(first) : 'model') + (others > 0 ? ` +${others}` : '');
  const activity =
    kind === 'serving'
      ? `serving at ${status.server_url}`
      : kind === 'generating' && status.queue_depth > 0
        ? `generating (+${status.queue_depth} queued)`
        : kind === 'generating'
          ? 'generating'
          : status.state === 'no model'
            ? 'idle' // no default model, others loaded
            : status.state;
  return [name, activity, formatRate(status.tokens_per_s), formatBytes(status.memory_bytes)]
    .filter((part): part is string => part !== null)
    .join(SEP);
}

/** The hover text: everything the compact line leaves out. */
export function formatTooltip(connection: ConnectionState, status: LmnbStatus | null): string {
  if (connection === 'not-loaded') {
    return 'lmnb is not loaded in this kernel. Click to run %load_ext lmnb.';
  }
  if (connection === 'connecting' || status === null) {
    return 'Connecting to lmnb in this kernel…';
  }
  const lines = [`lmnb ${status.version}`.trim()];
  if (status.models.length > 1) {
    lines.push(`Models (${status.models.length} loaded):`);
    for (const model of status.models) {
      lines.push(`  ${formatLoaded(model)}`);
    }
    if (status.state === 'loading' && status.model !== null) {
      lines.push(`  loading ${status.model}`);
    }
  } else if (status.model !== null) {
    lines.push(`Model: ${status.model} (${formatBytes(status.model_bytes)} of weights)`);
  } else if (status.models.length === 1) {
    lines.push(`Model: ${formatLoaded(status.models[0])}`);
  }
  lines.push(`State: ${status.state}`);
  if (status.server_url !== null) {
    lines.push(`Server: ${status.server_url}`);
  }
  const rate = formatRate(status.tokens_per_s);
  if (rate !== null) {
    lines.push(`Last request: ${rate}`);
  }
  if (status.queue_depth > 0) {
    lines.push(`Queued requests: ${status.queue_depth}`);
  }
  lines.push(`Kernel memory: ${formatBytes(status.memory_bytes)}`);
  lines.push('Click to open the Local LLM panel.');
  return lines.join('\n');
}
