// The messages exchanged with the kernel over the "lmnb" comm (lmnb/notebook/labcomm.py is the other end),
// and tolerant parsers for what the kernel sends: a missing or mistyped field gets a neutral
// default instead of breaking the UI, so the two sides can evolve a little independently.

export const COMM_TARGET = 'lmnb';

/** One model loaded in the kernel (a status lists them all, the default first). */
export interface LoadedModel {
  /** The name it is loaded under: "default" for the default model, else what `lmnb.load(..., name=)` got. */
  name: string;
  /** The model's own name (from its file: untrusted text). */
  model: string;
  /** Weights and context, as llama.cpp reports them. */
  model_bytes: number;
  /** Loaded by a request naming it; unloaded again after LM.idle_unload idle seconds. */
  on_demand: boolean;
  /** "idle" | "generating" | "loading"; any string, so a newer kernel's states still show. */
  state: string;
  /** Its LoRA adapters and the scales requests get by default (absent from older kernels). */
  lora?: { name: string; scale: number }[];
}

/** The registry name of the default model (what a plain "unload" unloads). */
export const DEFAULT_MODEL = 'default';

export interface LmnbStatus {
  /** The default model (while loading: the model being loaded); the other fields describe it too. */
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
  /**
   * Every loaded model, the default first. A kernel that predates it sends none: the default model
   * (when loaded) is then listed alone, from the fields above.
   */
  models: LoadedModel[];
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
  /** Unloads the default model. */
  | { type: 'unload' }
  /** Unloads the model loaded under `name` (a kernel that predates it answers with an error). */
  | { type: 'unload_model'; name: string }
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

function parseLoaded(data: Dict): LoadedModel | null {
  const name = strOrNull(data.name);
  if (name === null) {
    return null; // nothing to unload it by
  }
  return {
    name,
    model: strOrNull(data.model) ?? name,
    model_bytes: num(data.model_bytes, 0),
    on_demand: data.on_demand === true,
    state: typeof data.state === 'string' ? data.state : 'idle',
    ...(Array.isArray(data.lora) ? { lora: data.lora.filter(isDict).flatMap(parseAdapter) } : {})
  };
}

function parseAdapter(data: Dict): { name: string; scale: number }[] {
  const name = strOrNull(data.name);
  return name === null ? [] : [{ name, scale: num(data.scale, 0) }];
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
  const model = strOrNull(data.model);
  const state = typeof data.state === 'string' ? data.state : 'no model';
  const modelBytes = num(data.model_bytes, 0);
  let models: LoadedModel[];
  if (Array.isArray(data.models)) {
    models = data.models
      .filter(isDict)
      .map(parseLoaded)
      .filter((m): m is LoadedModel => m !== null);
  } else {
    // An older kernel: only the default model, and only once it is loaded.
    models =
      model !== null && state !== 'loading' && state !== 'no model'
        ? [{ name: DEFAULT_MODEL, model, model_bytes: modelBytes, on_demand: false, state }]
        : [];
  }
  return {
    model,
    state,
    load_progress: progress === null ? null : Math.min(1, Math.max(0, progress)),
    server_url: strOrNull(data.server_url),
    tokens_per_s: numOrNull(data.tokens_per_s),
    memory_bytes: num(data.memory_bytes, 0),
    model_bytes: modelBytes,
    queue_depth: num(data.queue_depth, 0),
    parameters,
    version: typeof data.version === 'string' ? data.version : '',
    models
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
