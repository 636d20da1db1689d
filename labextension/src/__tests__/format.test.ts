import { describe, expect, it } from 'vitest';
import {
  displayName,
  formatBytes,
  formatNumber,
  formatPercent,
  formatRate,
  formatStatus,
  formatTooltip,
  statusKind
} from '../format';
import { status } from './fakes';

const TWO = [
  { name: 'default', model: 'SmolLM2-135M-Instruct', model_bytes: 98e6, on_demand: false, state: 'idle' },
  { name: 'g', model: 'gemma-3-270m-it', model_bytes: 250e6, on_demand: true, state: 'idle' }
];

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [999, '999 B'],
    [1000, '1.0 kB'],
    [98e6, '98 MB'],
    [412e6, '412 MB'],
    [999.6e6, '1.0 GB'],
    [1.5e9, '1.5 GB'],
    [12.34e9, '12 GB'],
    [2e15, '2000 TB']
  ])('%d bytes -> %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  it('rejects nonsense', () => {
    expect(formatBytes(-1)).toBe('?');
    expect(formatBytes(Number.NaN)).toBe('?');
  });
});

describe('formatRate', () => {
  it('one decimal, tok/s', () => {
    expect(formatRate(97.34)).toBe('97.3 tok/s');
    expect(formatRate(0)).toBe('0.0 tok/s');
    expect(formatRate(1234.6)).toBe('1235 tok/s');
  });

  it('null when unknown', () => {
    expect(formatRate(null)).toBeNull();
    expect(formatRate(Number.NaN)).toBeNull();
  });
});

describe('small helpers', () => {
  it('formatPercent floors and clamps', () => {
    expect(formatPercent(0.42)).toBe('42%');
    expect(formatPercent(0.999)).toBe('99%');
    expect(formatPercent(1.5)).toBe('100%');
  });

  it('displayName keeps the last path segment, without .gguf', () => {
    expect(displayName('SmolLM2-135M-Instruct')).toBe('SmolLM2-135M-Instruct');
    expect(displayName('/models/qwen2.5-0.5b-instruct-q4_k_m.gguf')).toBe('qwen2.5-0.5b-instruct-q4_k_m');
    expect(displayName('bartowski/Qwen2.5-0.5B-Instruct-GGUF')).toBe('Qwen2.5-0.5B-Instruct-GGUF');
  });

  it('formatNumber', () => {
    expect(formatNumber(4096)).toBe('4096');
    expect(formatNumber(0.7)).toBe('0.7');
    expect(formatNumber(1 / 3)).toBe('0.3333');
  });
});

describe('formatStatus', () => {
  it('generating', () => {
    const s = status({ state: 'generating' });
    expect(formatStatus('ready', s)).toBe('SmolLM2-135M-Instruct · generating · 97.3 tok/s · 412 MB');
    expect(statusKind('ready', s)).toBe('generating');
  });

  it('generating with a queue', () => {
    const s = status({ state: 'generating', queue_depth: 2 });
    expect(formatStatus('ready', s)).toBe('SmolLM2-135M-Instruct · generating (+2 queued) · 97.3 tok/s · 412 MB');
  });

  it('idle', () => {
    const s = status();
    expect(formatStatus('ready', s)).toBe('SmolLM2-135M-Instruct · idle · 97.3 tok/s · 412 MB');
    expect(statusKind('ready', s)).toBe('idle');
  });

  it('no tokens/s yet: the part is left out', () => {
    expect(formatStatus('ready', status({ tokens_per_s: null }))).toBe('SmolLM2-135M-Instruct · idle · 412 MB');
  });

  it('loading, with and without progress', () => {
    const s = status({ state: 'loading', load_progress: 0.42 });
    expect(formatStatus('ready', s)).toBe('Loading SmolLM2-135M-Instruct… 42%');
    expect(statusKind('ready', s)).toBe('loading');
    expect(formatStatus('ready', status({ state: 'loading', load_progress: null }))).toBe(
      'Loading SmolLM2-135M-Instruct…'
    );
    expect(formatStatus('ready', status({ state: 'loading', model: null }))).toBe('Loading model…');
  });

  it('serving', () => {
    const s = status({ server_url: 'http://127.0.0.1:8000/v1' });
    expect(formatStatus('ready', s)).toBe(
      'SmolLM2-135M-Instruct · serving at http://127.0.0.1:8000/v1 · 97.3 tok/s · 412 MB'
    );
    expect(statusKind('ready', s)).toBe('serving');
  });

  it('generating while serving says generating', () => {
    const s = status({ state: 'generating', server_url: 'http://127.0.0.1:8000/v1' });
    expect(statusKind('ready', s)).toBe('generating');
  });

  it('no model', () => {
    const s = status({ model: null, state: 'no model', tokens_per_s: null });
    expect(formatStatus('ready', s)).toBe('lmnb: no model');
    expect(statusKind('ready', s)).toBe('no-model');
  });

  it('not loaded', () => {
    expect(formatStatus('not-loaded', null)).toBe('lmnb: not loaded');
    expect(statusKind('not-loaded', null)).toBe('not-loaded');
  });

  it('connecting', () => {
    expect(formatStatus('connecting', null)).toBe('lmnb: connecting…');
    expect(statusKind('connecting', null)).toBe('connecting');
  });

  it('an unknown state from a newer kernel is shown as sent', () => {
    expect(formatStatus('ready', status({ state: 'compacting' }))).toBe(
      'SmolLM2-135M-Instruct · compacting · 97.3 tok/s · 412 MB'
    );
  });
});

describe('several models', () => {
  it('the line names the default model and counts the others', () => {
    const s = status({ models: TWO });
    expect(formatStatus('ready', s)).toBe('SmolLM2-135M-Instruct +1 · idle · 97.3 tok/s · 412 MB');
    expect(statusKind('ready', s)).toBe('idle');
  });

  it('a model generating anywhere shows as generating', () => {
    const s = status({ models: [TWO[0], { ...TWO[1], state: 'generating' }] });
    expect(statusKind('ready', s)).toBe('generating');
    expect(formatStatus('ready', s)).toBe('SmolLM2-135M-Instruct +1 · generating · 97.3 tok/s · 412 MB');
    // serving, the default idle and another model generating: generating wins, as for one model
    expect(statusKind('ready', { ...s, server_url: 'http://127.0.0.1:8000/v1' })).toBe('generating');
  });

  it('models loaded under a name, with no default model, are not "no model"', () => {
    const s = status({ model: null, state: 'no model', models: [TWO[1]] });
    expect(statusKind('ready', s)).toBe('idle');
    expect(formatStatus('ready', s)).toBe('gemma-3-270m-it · idle · 97.3 tok/s · 412 MB');
    expect(formatTooltip('ready', s)).toContain('Model: gemma-3-270m-it (as g): 250 MB · loaded on demand');
  });

  it('the tooltip lists every model with its memory', () => {
    const text = formatTooltip('ready', status({ models: [TWO[0], { ...TWO[1], state: 'generating' }] }));
    expect(text).toContain('Models (2 loaded):');
    expect(text).toContain('  SmolLM2-135M-Instruct (default): 98 MB');
    expect(text).toContain('  gemma-3-270m-it (as g): 250 MB · generating · loaded on demand');
  });
});

describe('formatTooltip', () => {
  it('has the details the line leaves out', () => {
    const text = formatTooltip('ready', status({ server_url: 'http://127.0.0.1:8000/v1', queue_depth: 3 }));
    expect(text).toContain('lmnb 0.1.0');
    expect(text).toContain('98 MB of weights');
    expect(text).toContain('Server: http://127.0.0.1:8000/v1');
    expect(text).toContain('Queued requests: 3');
  });

  it('offers to load lmnb', () => {
    expect(formatTooltip('not-loaded', null)).toContain('%load_ext lmnb');
  });
});
