// @vitest-environment happy-dom
// The panel renders kernel data as text (never markup), and its buttons send the right messages.

import { Signal } from '@lumino/signaling';
import { describe, expect, it } from 'vitest';
import type { LmnbConnection } from '../connection';
import type { IConnectionSource } from '../current';
import { LocalLLMPanel } from '../panel';
import { StatusItem } from '../statusitem';
import { connect, FakeKernel, flush, statusMessage } from './fakes';

class Source implements IConnectionSource {
  constructor(readonly connection: LmnbConnection) {
    connection.changed.connect(() => this.changed.emit());
  }
  readonly changed = new Signal<this, void>(this);
}

const EVIL = '<img src=x onerror="globalThis.pwned=1">';

function setup(): { kernel: FakeKernel; panel: LocalLLMPanel; copied: string[] } {
  const kernel = new FakeKernel();
  const source = new Source(connect(kernel));
  const copied: string[] = [];
  const panel = new LocalLLMPanel(source, { copy: text => copied.push(text) });
  return { kernel, panel, copied };
}

function buttons(root: HTMLElement, text: string): HTMLButtonElement[] {
  return [...root.querySelectorAll('button')].filter(b => b.textContent === text);
}

describe('LocalLLMPanel', () => {
  it('shows kernel data as text only', () => {
    const { kernel, panel } = setup();
    const loaded = { name: EVIL, model: EVIL, model_bytes: 1, on_demand: false, state: EVIL };
    kernel.lastComm.receive(statusMessage({ model: EVIL, parameters: { [EVIL]: 1 }, models: [loaded] }));
    kernel.lastComm.receive({
      type: 'models',
      models: [{ name: EVIL, path: EVIL, size_bytes: 1, quant: EVIL, source: EVIL, loaded: false }]
    });
    kernel.lastComm.receive({ type: 'error', message: EVIL });
    expect(panel.node.querySelector('img')).toBeNull();
    expect(panel.node.textContent).toContain(EVIL);
    expect(panel.node.id).toBe('lmnb-panel');
    expect(panel.title.caption).toBe('Local LLM');
  });

  it('offers to load lmnb when it is not loaded', async () => {
    const { kernel, panel } = setup();
    kernel.lastComm.closeFromKernel();
    const [load] = buttons(panel.node, 'Load lmnb in this kernel');
    expect(load.closest('section')?.hidden).toBe(false);
    load.click();
    await flush();
    expect(kernel.executed.map(e => e.code)).toEqual(['%load_ext lmnb']);
  });

  it('Load / Unload / server buttons send messages; Copy copies the URL', async () => {
    const { kernel, panel, copied } = setup();
    kernel.lastComm.receive(statusMessage({ model: 'a' }));
    kernel.lastComm.receive({
      type: 'models',
      models: [
        { name: 'a', path: '/a.gguf', size_bytes: 1, quant: null, source: 'local', loaded: true },
        { name: 'b', path: '/b.gguf', size_bytes: 1, quant: null, source: 'local', loaded: false }
      ]
    });
    // the loaded model is unloaded from the list of loaded models; the file list offers only Load
    const files = panel.node.querySelectorAll<HTMLElement>('.lmnb-ModelList:not(.lmnb-LoadedList) li');
    expect([...files].map(li => [li.dataset.loaded, li.querySelector('button')?.textContent ?? null])).toEqual([
      ['true', null],
      ['false', 'Load']
    ]);
    buttons(panel.node, 'Load')[0].click();
    buttons(panel.node, 'Unload')[0].click();
    buttons(panel.node, 'Start')[0].click();
    await flush();
    expect(kernel.lastComm.sent).toEqual([{ type: 'load', model: 'b' }, { type: 'unload' }, { type: 'serve' }]);

    kernel.lastComm.receive(statusMessage({ model: 'a', server_url: 'http://127.0.0.1:8000/v1' }));
    const url = panel.node.querySelector<HTMLInputElement>('.lmnb-Panel-url');
    expect(url?.value).toBe('http://127.0.0.1:8000/v1');
    expect(url?.readOnly).toBe(true);
    buttons(panel.node, 'Copy')[0].click();
    expect(copied).toEqual(['http://127.0.0.1:8000/v1']);
    buttons(panel.node, 'Stop')[0].click();
    await flush();
    expect(kernel.lastComm.sent[kernel.lastComm.sent.length - 1]).toEqual({ type: 'stop_server' });
  });

  it('lists every loaded model with its memory and an Unload of its own', async () => {
    const { kernel, panel } = setup();
    kernel.lastComm.receive(
      statusMessage({
        model: 'SmolLM2',
        models: [
          { name: 'default', model: 'SmolLM2', model_bytes: 98e6, on_demand: false, state: 'idle' },
          { name: 'g', model: 'gemma-3-270m', model_bytes: 250e6, on_demand: true, state: 'generating' }
        ]
      })
    );
    const rows = [...panel.node.querySelectorAll<HTMLElement>('.lmnb-LoadedList-item')];
    expect(rows.map(r => r.dataset.name)).toEqual(['default', 'g']);
    expect(rows[0].textContent).toContain('SmolLM2');
    expect(rows[0].textContent).toContain('default · 98 MB');
    expect(rows[0].textContent).not.toContain('LoRA');
    expect(rows[1].textContent).toContain('as g · 250 MB · generating · loaded on demand');
    const unloads = buttons(panel.node, 'Unload');
    expect(unloads).toHaveLength(2);
    unloads[1].click();
    unloads[0].click();
    await flush();
    expect(kernel.lastComm.sent).toEqual([{ type: 'unload_model', name: 'g' }, { type: 'unload' }]);
    // the server can start with only a named model loaded
    kernel.lastComm.receive(
      statusMessage({
        model: null,
        state: 'no model',
        models: [{ name: 'g', model: 'gemma-3-270m', model_bytes: 250e6, on_demand: false, state: 'idle' }]
      })
    );
    expect(buttons(panel.node, 'Start')[0].disabled).toBe(false);
    expect(panel.node.querySelectorAll('.lmnb-LoadedList-item')).toHaveLength(1);
    kernel.lastComm.receive(statusMessage({ model: null, state: 'no model' }));
    expect(panel.node.querySelector('.lmnb-LoadedList')?.textContent).toBe('No model loaded.');
    expect(buttons(panel.node, 'Start')[0].disabled).toBe(true);
  });
});

describe('StatusItem', () => {
  it('lists each loaded model\'s LoRA adapters with their scales, as text', () => {
    const { kernel, panel } = setup();
    const lora = [{ name: 'reports', scale: 0.5 }, { name: EVIL, scale: 1 }];
    kernel.lastComm.receive(
      statusMessage({
        model: 'SmolLM2',
        models: [{ name: 'default', model: 'SmolLM2', model_bytes: 98e6, on_demand: false, state: 'idle', lora }]
      })
    );
    const row = panel.node.querySelector<HTMLElement>('.lmnb-LoadedList-item');
    expect(row?.textContent).toContain('default · 98 MB · LoRA reports ×0.5 · LoRA ');
    expect(row?.textContent).toContain(EVIL);
    expect(panel.node.querySelector('img')).toBeNull();
  });

  it('has stable hooks and follows the state', () => {
    const kernel = new FakeKernel();
    const source = new Source(connect(kernel));
    const clicks: string[] = [];
    const item = new StatusItem(source, kind => clicks.push(kind));
    expect(item.node.id).toBe('lmnb-status');
    expect(item.node.classList.contains('lmnb-StatusItem')).toBe(true);
    kernel.lastComm.closeFromKernel();
    expect(item.node.dataset.state).toBe('not-loaded');
    expect(item.node.textContent).toBe('lmnb: not loaded');
    item.node.click();
    void source.connection.reconnect();
    kernel.lastComm.receive(statusMessage({ server_url: 'http://127.0.0.1:8000/v1' }));
    expect(item.node.dataset.state).toBe('serving');
    item.node.click();
    expect(clicks).toEqual(['not-loaded', 'serving']);
  });

  it('shows every loaded model, untrusted names as text', () => {
    const kernel = new FakeKernel();
    const source = new Source(connect(kernel));
    const item = new StatusItem(source, () => undefined);
    kernel.lastComm.receive(
      statusMessage({
        model: 'SmolLM2-135M-Instruct',
        models: [
          { name: 'default', model: 'SmolLM2-135M-Instruct', model_bytes: 98e6, on_demand: false, state: 'idle' },
          { name: 'g', model: EVIL, model_bytes: 250e6, on_demand: false, state: 'generating' }
        ]
      })
    );
    expect(item.node.dataset.models).toBe('2');
    expect(item.node.dataset.state).toBe('generating');
    expect(item.node.textContent).toBe('SmolLM2-135M-Instruct +1 · generating · 97.3 tok/s · 412 MB');
    expect(item.node.title).toContain(`${EVIL} (as g): 250 MB · generating`);
    expect(item.node.querySelector('img')).toBeNull();
  });
});
