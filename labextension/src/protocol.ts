// The messages exchanged with the kernel over the "lmnb" comm (lmnb/labcomm.py is the other end),
// and tolerant parsers for what the kernel sends: a missing or mistyped field gets a neutral
// default instead of breaking the UI, so the two sides can evolve a little independently.

export const COMM_TARGET = 'lmnb';

export interface LmnbStatus {
  model: string | null;
  /** "no model" | "idle" | "loading" | "generating"; any string, so a newer kernel's states still show. */
  state: string;
  /** 0..1 while loading, else null. */
  load_progress: number | null;
  /** e.g. "http://127.0.0.1:8000/v1" while the OpenAI-compatible server runs. */
  server_url: string | null;
  /** Generation speed of the last finished request. */
  tokens_per_s: number | null;
  /** Kernel process RSS. */
  memory_bytes: number;
  /** Size of the loaded weights. */
  model_bytes: number;
  queue_depth: number;
  /** temperature, top_p, top_k, min_p, repeat_penalty, max_tokens, n_ctx, n_parallel; shown as sent. */
  parameters: Record<string, number>;
  version: string;
}

export interface ModelInfo {
  name: string;
  path: string;
  size_bytes: number;
  quant: string | null;
  source: string;
  loaded: boolean;
}

/** Front end -> kernel. */
export type OutgoingMessage =
  | { type: 'hello' }
  | { type: 'load'; model: string }
  | { type: 'unload' }
  | { type: 'serve'; port?: number }
  | { type: 'stop_server' }
  | { type: 'models' };

/** Kernel -> front end, after parsing. */
export type IncomingMessage =
  | { type: 'status'; status: LmnbStatus }
  | { type: 'models'; models: ModelInfo[] }
  | { type: 'error'; message: string };

type Dict = { readonly [key: string]: unknown };

function isDict(value: unknown): value is Dict {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function num(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

function numOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function strOrNull(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

export function parseStatus(data: Dict): LmnbStatus {
  const parameters: Record<string, number> = {};
  if (isDict(data.parameters)) {
    for (const [key, value] of Object.entries(data.parameters)) {
      if (typeof value === 'number' && Number.isFinite(value)) {
        parameters[key] = value;
      }
    }
  }
  const progress = numOrNull(data.load_progress);
  return {
    model: strOrNull(data.model),
    state: typeof data.state === 'string' ? data.state : 'no model',
    load_progress: progress === null ? null : Math.min(1, Math.max(0, progress)),
    server_url: strOrNull(data.server_url),
    tokens_per_s: numOrNull(data.tokens_per_s),
    memory_bytes: num(data.memory_bytes, 0),
    model_bytes: num(data.model_bytes, 0),
    queue_depth: num(data.queue_depth, 0),
    parameters,
    version: typeof data.version === 'string' ? data.version : ''
  };
}

export function parseModels(data: Dict): ModelInfo[] {
  if (!Array.isArray(data.models)) {
    return [];
  }
  return data.models.filter(isDict).map(m => ({
    name: typeof m.name === 'string' ? m.name : String(m.path ?? '?'),
    path: typeof m.path === 'string' ? m.path : '',
    size_bytes: num(m.size_bytes, 0),
    quant: strOrNull(m.quant),
    source: typeof m.source === 'string' ? m.source : '',
    loaded: m.loaded === true
  }));
}

/** Parse one comm message's data; null for anything this front end does not know. */
export function parseMessage(data: unknown): IncomingMessage | null {
  if (!isDict(data)) {
    return null;
  }
  switch (data.type) {
    case 'status':
      return { type: 'status', status: parseStatus(data) };
    case 'models':
      return { type: 'models', models: parseModels(data) };
    case 'error':
      return {
        type: 'error',
        message: typeof data.message === 'string' ? data.message : 'lmnb: unknown error'
      };
    default:
      return null;
  }
}
