// The "Local LLM" side panel: the loaded models (each with its memory and Unload), the local models
// with Load, the server, the current parameters.
// Plain DOM in a Lumino widget. Kernel data only ever goes through textContent / value / title,
// never innerHTML. Sections update in place so typing in an input survives status updates.

import { Widget } from '@lumino/widgets';
import type { LmnbConnection } from './connection';
import type { IConnectionSource } from './current';
import { formatBytes, formatNumber, formatPercent, formatStatus, loadedLabel, statusKind } from './format';
import type { LoadedModel, ModelInfo } from './protocol';

export const PANEL_ID = 'lmnb-panel';
export const PANEL_TITLE = 'Local LLM';

type Child = Node | string | null;

/** Create an element; strings become text nodes (escaped by construction). */
function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { className?: string; text?: string; title?: string } = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.className !== undefined) {
    element.className = props.className;
  }
  if (props.text !== undefined) {
    element.textContent = props.text;
  }
  if (props.title !== undefined) {
    element.title = props.title;
  }
  for (const child of children) {
    if (child !== null) {
      element.append(child);
    }
  }
  return element;
}

function button(text: string, onClick: () => void, className = ''): HTMLButtonElement {
  const b = h('button', { className: `jp-mod-styled lmnb-Button ${className}`.trim(), text });
  b.type = 'button';
  b.addEventListener('click', onClick);
  return b;
}

export interface IPanelOptions {
  /** Put text on the system clipboard (JupyterLab's Clipboard.copyToSystem in the app). */
  copy: (text: string) => void;
}

export class LocalLLMPanel extends Widget {
  constructor(source: IConnectionSource, options: IPanelOptions) {
    super();
    this.id = PANEL_ID;
    this.title.caption = PANEL_TITLE;
    this.addClass('lmnb-Panel');
    this._source = source;
    this._copy = options.copy;
    this._buildDom();
    source.changed.connect(this._render, this);
    this._render();
  }

  override dispose(): void {
    if (!this.isDisposed) {
      this._source.changed.disconnect(this._render, this);
    }
    super.dispose();
  }

  private get _connection(): LmnbConnection | null {
    return this._source.connection;
  }

  private _run(action: (connection: LmnbConnection) => Promise<unknown>): void {
    const connection = this._connection;
    if (connection !== null) {
      void action(connection);
    }
  }

  private _buildDom(): void {
    const loadOther = h(
      'form',
      { className: 'lmnb-Panel-loadOther' },
      this._otherInput,
      button('Load', () => this._loadOther(), 'jp-mod-accept')
    );
    this._otherInput.className = 'jp-mod-styled lmnb-Input';
    this._otherInput.placeholder = 'Path or Hugging Face repo';
    this._otherInput.setAttribute('aria-label', 'Model path or Hugging Face repo');
    loadOther.addEventListener('submit', event => {
      event.preventDefault();
      this._loadOther();
    });

    this._urlInput.className = 'jp-mod-styled lmnb-Input lmnb-Panel-url';
    this._urlInput.readOnly = true;
    this._urlInput.setAttribute('aria-label', 'Server URL');
    this._portInput.className = 'jp-mod-styled lmnb-Input lmnb-Panel-port';
    this._portInput.type = 'number';
    this._portInput.min = '1';
    this._portInput.max = '65535';
    this._portInput.placeholder = 'port (default)';
    this._portInput.setAttribute('aria-label', 'Server port');
    this._progress.className = 'lmnb-Panel-progress';
    this._progress.max = 1;

    this._serverRunning.append(
      this._urlInput,
      button('Copy', () => this._copy(this._urlInput.value)),
      button('Stop', () => this._run(c => c.stopServer()), 'jp-mod-warn')
    );
    this._serverStopped.append(
      this._portInput,
      button('Start', () => this._startServer(), 'jp-mod-accept')
    );

    this._notLoaded.append(
      h('p', { text: "lmnb is not loaded in this notebook's kernel." }),
      button('Load lmnb in this kernel', () => this._run(c => c.loadExtension()), 'jp-mod-accept')
    );

    this._error.append(
      this._errorText,
      button('Dismiss', () => this._connection?.clearError(), 'lmnb-Panel-dismiss')
    );
    this._error.setAttribute('role', 'alert');

    this._ready.append(
      h(
        'section',
        { className: 'lmnb-Panel-section lmnb-Panel-models' },
        h(
          'div',
          { className: 'lmnb-Panel-sectionHeader' },
          h('h3', { text: 'Models' }),
          button('Refresh', () => this._run(c => c.refreshModels()), 'lmnb-Panel-refresh')
        ),
        this._progress,
        h('div', { className: 'lmnb-ModelList-details lmnb-Panel-subheader', text: 'Loaded in the kernel' }),
        this._loadedList,
        h('div', { className: 'lmnb-ModelList-details lmnb-Panel-subheader', text: 'On this machine' }),
        this._modelList,
        loadOther
      ),
      h(
        'section',
        { className: 'lmnb-Panel-section lmnb-Panel-server' },
        h('h3', { text: 'Server' }),
        this._serverRunning,
        this._serverStopped
      ),
      h(
        'section',
        { className: 'lmnb-Panel-section lmnb-Panel-parameters' },
        h('h3', { text: 'Parameters' }),
        this._parameters
      )
    );

    this.node.append(
      h('header', { className: 'lmnb-Panel-header' }, h('h2', { text: PANEL_TITLE }), this._summary),
      this._error,
      this._message,
      this._notLoaded,
      this._ready
    );
  }

  private _loadOther(): void {
    const name = this._otherInput.value.trim();
    if (name !== '') {
      this._run(c => c.load(name));
    }
  }

  private _startServer(): void {
    const raw = this._portInput.value.trim();
    const port = raw === '' ? undefined : Number(raw);
    if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
      this._portInput.setCustomValidity('A port is a whole number from 1 to 65535.');
      this._portInput.reportValidity();
      return;
    }
    this._portInput.setCustomValidity('');
    this._run(c => c.serve(port));
  }

  private _render(): void {
    const connection = this._connection;
    const state = connection?.state ?? null;
    const status = connection?.status ?? null;

    this._summary.textContent = connection !== null ? formatStatus(connection.state, status) : '';
    this._summary.dataset.state = connection !== null ? statusKind(connection.state, status) : 'none';

    const error = connection?.lastError ?? null;
    this._error.hidden = error === null;
    this._errorText.textContent = error ?? '';

    this._message.hidden = state === 'ready' || state === 'not-loaded';
    this._message.textContent =
      connection === null ? 'Open a notebook with a running kernel to use lmnb.' : 'Connecting to lmnb…';
    this._notLoaded.hidden = state !== 'not-loaded';
    this._ready.hidden = state !== 'ready' || status === null;
    if (connection === null || status === null || state !== 'ready') {
      return;
    }

    const loading = status.state === 'loading';
    this._progress.hidden = !loading;
    if (loading) {
      // No value: an indeterminate bar until the kernel reports progress.
      if (status.load_progress === null) {
        this._progress.removeAttribute('value');
      } else {
        this._progress.value = status.load_progress;
      }
      this._progress.title = status.load_progress !== null ? formatPercent(status.load_progress) : '';
    }
    this._renderLoaded(status.models, loading);
    this._renderModels(connection.models, status.model, loading);

    const url = status.server_url;
    this._serverRunning.hidden = url === null;
    this._serverStopped.hidden = url !== null;
    if (url !== null && this._urlInput.value !== url) {
      this._urlInput.value = url;
    }
    for (const b of this._serverStopped.querySelectorAll('button')) {
      const none = status.model === null && status.models.length === 0;
      b.disabled = none;
      b.title = none ? 'Load a model first' : '';
    }

    this._renderParameters(status.parameters);
  }

  /** Every model the kernel has loaded, with its memory and an Unload button of its own. */
  private _renderLoaded(models: readonly LoadedModel[], loading: boolean): void {
    const key = JSON.stringify([models, loading]);
    if (key === this._loadedKey) {
      return; // unchanged: keep the buttons (and their focus) as they are
    }
    this._loadedKey = key;
    const rows = models.map(model => {
      const details = [loadedLabel(model), formatBytes(model.model_bytes)];
      if (model.state !== 'idle') {
        details.push(model.state);
      }
      if (model.on_demand) {
        details.push('loaded on demand');
      }
      for (const adapter of model.lora ?? []) {
        details.push(`LoRA ${adapter.name} ×${adapter.scale}`);
      }
      const unload = button('Unload', () => this._run(c => c.unload(model.name)));
      unload.disabled = loading || model.state === 'loading';
      unload.title = `Unload ${model.model} (${loadedLabel(model)})`;
      const row = h(
        'li',
        { className: 'lmnb-ModelList-item lmnb-LoadedList-item' },
        h(
          'div',
          { className: 'lmnb-ModelList-info' },
          h('div', { className: 'lmnb-ModelList-name', text: model.model, title: model.model }),
          h('div', { className: 'lmnb-ModelList-details', text: details.join(' · ') })
        ),
        unload
      );
      row.dataset.loaded = 'true';
      row.dataset.name = model.name;
      return row;
    });
    if (rows.length === 0) {
      rows.push(h('li', { className: 'lmnb-ModelList-empty', text: 'No model loaded.' }));
    }
    this._loadedList.replaceChildren(...rows);
  }

  /** The local model files: Load for each; the loaded ones are marked (unloaded from the list above). */
  private _renderModels(models: readonly ModelInfo[], current: string | null, loading: boolean): void {
    const key = JSON.stringify([models, current, loading]);
    if (key === this._modelsKey) {
      return; // unchanged: keep the buttons (and their focus) as they are
    }
    this._modelsKey = key;
    const rows = models.map(model => {
      const loaded = model.loaded || model.name === current;
      const details = [formatBytes(model.size_bytes), model.quant, model.source, loaded ? 'loaded' : null]
        .filter(part => part !== null && part !== '')
        .join(' · ');
      // Load makes it the default model, replacing the default one; loaded ones are unloaded above.
      let action: HTMLButtonElement | null = null;
      if (!loaded) {
        action = button('Load', () => this._run(c => c.load(model.name)), 'jp-mod-accept');
        action.disabled = loading;
        action.title = `Load ${model.name} as the default model`;
      }
      const row = h(
        'li',
        { className: 'lmnb-ModelList-item' },
        h(
          'div',
          { className: 'lmnb-ModelList-info' },
          h('div', { className: 'lmnb-ModelList-name', text: model.name, title: model.path || model.name }),
          h('div', { className: 'lmnb-ModelList-details', text: details })
        ),
        action
      );
      row.dataset.loaded = String(loaded);
      return row;
    });
    if (rows.length === 0) {
      rows.push(
        h('li', {
          className: 'lmnb-ModelList-empty',
          text: 'No local models found. Type a path or a Hugging Face repo below.'
        })
      );
    }
    this._modelList.replaceChildren(...rows);
  }

  private _renderParameters(parameters: Record<string, number>): void {
    const key = JSON.stringify(parameters);
    if (key === this._parametersKey) {
      return;
    }
    this._parametersKey = key;
    const rows = Object.entries(parameters).map(([name, value]) =>
      h('tr', {}, h('th', { text: name }), h('td', { text: formatNumber(value) }))
    );
    this._parameters.replaceChildren(h('tbody', {}, ...rows));
  }

  private readonly _source: IConnectionSource;
  private readonly _copy: (text: string) => void;
  private readonly _summary = h('div', { className: 'lmnb-Panel-summary' });
  private readonly _error = h('div', { className: 'lmnb-Panel-error' });
  private readonly _errorText = h('span', { className: 'lmnb-Panel-errorText' });
  private readonly _message = h('p', { className: 'lmnb-Panel-message' });
  private readonly _notLoaded = h('section', { className: 'lmnb-Panel-section lmnb-Panel-notLoaded' });
  private readonly _ready = h('div', { className: 'lmnb-Panel-ready' });
  private readonly _progress = h('progress');
  private readonly _loadedList = h('ul', { className: 'lmnb-ModelList lmnb-LoadedList' });
  private readonly _modelList = h('ul', { className: 'lmnb-ModelList' });
  private readonly _otherInput = h('input');
  private readonly _serverRunning = h('div', { className: 'lmnb-Panel-row lmnb-Panel-serverRunning' });
  private readonly _serverStopped = h('div', { className: 'lmnb-Panel-row lmnb-Panel-serverStopped' });
  private readonly _urlInput = h('input');
  private readonly _portInput = h('input');
  private readonly _parameters = h('table', { className: 'lmnb-Panel-parameterTable' });
  private _loadedKey = '';
  private _modelsKey = '';
  private _parametersKey = '';
}
