// The status bar item: one compact line about the current notebook kernel's model.
// DOM hooks for browser tests: id "lmnb-status", class "lmnb-StatusItem", data-state (a StatusKind),
// data-models (how many models the kernel has loaded).

import { Widget } from '@lumino/widgets';
import type { IConnectionSource } from './current';
import { formatStatus, formatTooltip, statusKind, type StatusKind } from './format';

export class StatusItem extends Widget {
  /** onActivate gets the state shown when clicked ("not-loaded": load lmnb; else: open the panel). */
  constructor(source: IConnectionSource, onActivate: (kind: StatusKind) => void) {
    super();
    this.id = 'lmnb-status';
    // jp-mod-highlighted: the status bar's own hover style for clickable items.
    this.addClass('lmnb-StatusItem');
    this.addClass('jp-mod-highlighted');
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this._text.className = 'jp-StatusBar-TextItem lmnb-StatusItem-text';
    this.node.appendChild(this._text);
    this._source = source;
    this.node.addEventListener('click', () => onActivate(this._kind));
    this.node.addEventListener('keydown', (event: KeyboardEvent) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        onActivate(this._kind);
      }
    });
    source.changed.connect(this._render, this);
    this._render();
  }

  override dispose(): void {
    if (!this.isDisposed) {
      this._source.changed.disconnect(this._render, this);
    }
    super.dispose();
  }

  private _render(): void {
    const connection = this._source.connection;
    if (connection === null) {
      // The status bar hides the item (isActive); keep a defined state meanwhile.
      this._kind = 'not-loaded';
      this.node.dataset.state = 'not-loaded';
      this.node.dataset.models = '0';
      return;
    }
    this._kind = statusKind(connection.state, connection.status);
    this.node.dataset.state = this._kind;
    this.node.dataset.models = String(connection.status?.models.length ?? 0);
    this._text.textContent = formatStatus(connection.state, connection.status);
    this.node.title = formatTooltip(connection.state, connection.status);
  }

  private readonly _source: IConnectionSource;
  private readonly _text = document.createElement('span');
  private _kind: StatusKind = 'connecting';
}
