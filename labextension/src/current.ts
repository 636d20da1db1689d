// Follows the current notebook's kernel (INotebookTracker + sessionContext signals) and hands out
// one LmnbConnection per kernel connection, so switching between notebooks needs no new handshake.

import type { NotebookPanel } from '@jupyterlab/notebook';
import type { Kernel } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';
import { LmnbConnection } from './connection';

/** What the status item and the panel need: the current connection and a change signal. */
export interface IConnectionSource {
  readonly connection: LmnbConnection | null;
  /** The current connection changed, or something in it did. */
  readonly changed: ISignal<unknown, void>;
}

/** The subset of INotebookTracker used here. */
export interface INotebookSource {
  readonly currentWidget: NotebookPanel | null;
  readonly currentChanged: ISignal<unknown, NotebookPanel | null>;
}

export class CurrentKernel implements IConnectionSource {
  constructor(tracker: INotebookSource) {
    tracker.currentChanged.connect(this._onCurrentChanged, this);
    this._onCurrentChanged(tracker, tracker.currentWidget);
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Only when the connection itself is replaced (a cheaper signal for the status bar). */
  get connectionChanged(): ISignal<this, void> {
    return this._connectionChanged;
  }

  /** Error messages from the current kernel. */
  get errorReceived(): ISignal<this, string> {
    return this._errorReceived;
  }

  get notebook(): NotebookPanel | null {
    return this._panel;
  }

  /** Null when there is no notebook or its kernel is not running. */
  get connection(): LmnbConnection | null {
    return this._connection;
  }

  private _onCurrentChanged(_sender: unknown, panel: NotebookPanel | null): void {
    if (this._panel !== null) {
      this._panel.sessionContext.kernelChanged.disconnect(this._update, this);
      this._panel.sessionContext.sessionChanged.disconnect(this._update, this);
    }
    this._panel = panel;
    if (panel !== null) {
      panel.sessionContext.kernelChanged.connect(this._update, this);
      panel.sessionContext.sessionChanged.connect(this._update, this);
    }
    this._update();
  }

  private _update(): void {
    const kernel = this._panel?.sessionContext.session?.kernel ?? null;
    const connection = kernel !== null && !kernel.isDisposed ? this._connectionFor(kernel) : null;
    if (connection !== this._connection) {
      this._connection?.changed.disconnect(this._emitChanged, this);
      this._connection?.errorReceived.disconnect(this._forwardError, this);
      this._connection = connection;
      connection?.changed.connect(this._emitChanged, this);
      connection?.errorReceived.connect(this._forwardError, this);
      this._connectionChanged.emit();
    }
    this._changed.emit();
  }

  private _connectionFor(kernel: Kernel.IKernelConnection): LmnbConnection {
    let connection = this._connections.get(kernel);
    if (connection === undefined) {
      const created = new LmnbConnection(kernel);
      this._connections.set(kernel, created);
      // A kernel connection is disposed on shutdown or kernel change: its comm goes with it.
      kernel.disposed.connect(() => {
        this._connections.delete(kernel);
        created.dispose();
        if (this._connection === created) {
          this._update();
        }
      });
      connection = created;
    }
    return connection;
  }

  private _emitChanged(): void {
    this._changed.emit();
  }

  private _forwardError(_sender: LmnbConnection, message: string): void {
    this._errorReceived.emit(message);
  }

  private readonly _changed = new Signal<this, void>(this);
  private readonly _connectionChanged = new Signal<this, void>(this);
  private readonly _errorReceived = new Signal<this, string>(this);
  private readonly _connections = new Map<Kernel.IKernelConnection, LmnbConnection>();
  private _panel: NotebookPanel | null = null;
  private _connection: LmnbConnection | null = null;
}
