// One kernel's end of the "lmnb" comm: opens it, keeps the last status and models list the kernel
// sent, and sends the commands. No DOM and no JupyterLab runtime here (only types), so vitest can
// drive it with a fake kernel.

import type { Kernel, KernelMessage } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';
import {
  COMM_TARGET,
  DEFAULT_MODEL,
  type LmnbStatus,
  type ModelInfo,
  type OutgoingMessage,
  parseMessage
} from './protocol';

/** "not-loaded": the kernel has no "lmnb" comm target (or did not answer in time). */
export type ConnectionState = 'connecting' | 'not-loaded' | 'ready';

/** The part of a JupyterLab kernel connection this class uses (tests pass a fake). */
export type KernelLike = Pick<
  Kernel.IKernelConnection,
  'createComm' | 'requestExecute' | 'status' | 'statusChanged' | 'iopubMessage'
>;

export const LOAD_CODE = '%load_ext lmnb';
/** ipykernel closes a comm to an unknown target at once; no answer this long also means "not loaded". */
export const HELLO_TIMEOUT_MS = 3000;

const HELLO: OutgoingMessage = { type: 'hello' };
// The kernel process is gone or being replaced: its comms die with it.
const GONE: ReadonlySet<string> = new Set(['restarting', 'autorestarting', 'starting', 'dead']);

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** What the models list's "loaded" marks depend on: the default model and every loaded one. */
function loadedKey(status: LmnbStatus): string {
  return JSON.stringify([status.model, status.models.map(m => [m.name, m.model])]);
}

export class LmnbConnection {
  constructor(kernel: KernelLike, options: { helloTimeoutMs?: number } = {}) {
    this._kernel = kernel;
    this._helloTimeoutMs = options.helloTimeoutMs ?? HELLO_TIMEOUT_MS;
    kernel.statusChanged.connect(this._onKernelStatus, this);
    kernel.iopubMessage.connect(this._onIOPub, this);
    if (kernel.status === 'idle' || kernel.status === 'busy') {
      this._open();
    } else {
      // Still starting: a comm opened now could time out before the kernel can answer it.
      this._openWhenIdle = true;
    }
  }

  /** Any of state, status, models or lastError changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The kernel sent an error message (also kept in lastError). */
  get errorReceived(): ISignal<this, string> {
    return this._errorReceived;
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** The kernel's last status; null unless state is "ready". */
  get status(): LmnbStatus | null {
    return this._status;
  }

  get models(): readonly ModelInfo[] {
    return this._models;
  }

  get lastError(): string | null {
    return this._lastError;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  clearError(): void {
    if (this._lastError !== null) {
      this._lastError = null;
      this._changed.emit();
    }
  }

  load(model: string): Promise<boolean> {
    return this._request({ type: 'load', model });
  }

  /** Unload the model loaded under `name` (default: the default model, with the plain "unload"). */
  unload(name: string = DEFAULT_MODEL): Promise<boolean> {
    return this._request(name === DEFAULT_MODEL ? { type: 'unload' } : { type: 'unload_model', name });
  }

  serve(port?: number): Promise<boolean> {
    return this._request(port === undefined ? { type: 'serve' } : { type: 'serve', port });
  }

  stopServer(): Promise<boolean> {
    return this._request({ type: 'stop_server' });
  }

  refreshModels(): Promise<boolean> {
    return this._request({ type: 'models' });
  }

  /** Resolves true once lmnb answers in this kernel, running %load_ext lmnb first if needed. */
  async ensureReady(): Promise<boolean> {
    if ((await this._settled()) === 'not-loaded') {
      return this.loadExtension();
    }
    return this._state === 'ready';
  }

  /** Run %load_ext lmnb in the kernel (silently: no cell, no history), then reopen the comm. */
  loadExtension(): Promise<boolean> {
    // One %load_ext at a time, however often the button is clicked.
    this._loading ??= this._loadExtension().finally(() => {
      this._loading = null;
    });
    return this._loading;
  }

  /** Reopen the comm (the kernel side forgets nothing: it answers hello with its current state). */
  reconnect(): Promise<ConnectionState> {
    this._open();
    return this._settled();
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._dropComm(true);
    this._setState('not-loaded');
    Signal.clearData(this);
  }

  private async _loadExtension(): Promise<boolean> {
    this._dropComm(true);
    this._status = null;
    this._lastError = null;
    this._setState('connecting');
    try {
      const reply = await this._kernel.requestExecute({
        code: LOAD_CODE,
        silent: true,
        store_history: false
      }).done;
      const content = reply.content;
      if (content.status === 'error') {
        return this._fail(`${LOAD_CODE} failed: ${content.ename}: ${content.evalue}`);
      }
      if (content.status !== 'ok') {
        return this._fail(`${LOAD_CODE} was aborted`);
      }
    } catch (error) {
      return this._fail(`${LOAD_CODE} failed: ${describe(error)}`);
    }
    if (this._disposed) {
      return false;
    }
    return (await this.reconnect()) === 'ready';
  }

  private _fail(message: string): false {
    if (!this._disposed) {
      this._lastError = message;
      this._setState('not-loaded');
    }
    return false;
  }

  private async _request(message: OutgoingMessage): Promise<boolean> {
    if (!(await this.ensureReady())) {
      return false;
    }
    return this._send(message);
  }

  private _send(message: OutgoingMessage): boolean {
    const comm = this._comm;
    if (comm === null) {
      return false;
    }
    try {
      // Fire and forget: answers come back as status/models/error messages, not as replies.
      comm.send(message).done.catch(() => undefined);
      return true;
    } catch (error) {
      this._lastError = `Could not send to the kernel: ${describe(error)}`;
      this._changed.emit();
      return false;
    }
  }

  private _open(): void {
    this._dropComm(true);
    this._openWhenIdle = false;
    this._status = null;
    this._setState('connecting');
    let comm: Kernel.IComm;
    try {
      comm = this._kernel.createComm(COMM_TARGET);
    } catch (error) {
      this._fail(`Could not open the lmnb comm: ${describe(error)}`);
      return;
    }
    this._comm = comm;
    comm.onMsg = msg => this._onCommMsg(comm, msg);
    comm.onClose = () => this._onCommClose(comm);
    // After the timeout a status that still arrives (a slow kernel) is accepted: see _onCommMsg.
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._comm === comm && this._state === 'connecting') {
        this._setState('not-loaded');
      }
    }, this._helloTimeoutMs);
    try {
      comm.open(HELLO).done.catch(() => undefined);
    } catch (error) {
      this._dropComm(false);
      this._fail(`Could not open the lmnb comm: ${describe(error)}`);
    }
  }

  /** Forget the current comm; close it on the kernel side too if that kernel is still the same. */
  private _dropComm(close: boolean): void {
    this._clearTimer();
    const comm = this._comm;
    this._comm = null;
    if (comm === null) {
      return;
    }
    comm.onMsg = () => undefined;
    comm.onClose = () => undefined;
    if (close && !comm.isDisposed) {
      try {
        comm.close().done.catch(() => undefined);
      } catch {
        // The kernel connection is already gone: nothing to tell it.
      }
    }
  }

  private _clearTimer(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _onCommMsg(comm: Kernel.IComm, msg: KernelMessage.ICommMsgMsg): void {
    if (comm !== this._comm) {
      return;
    }
    const message = parseMessage(msg.content.data);
    if (message === null) {
      return;
    }
    switch (message.type) {
      case 'status': {
        const previous = this._status;
        this._status = message.status;
        this._clearTimer();
        if (this._state !== 'ready') {
          this._setState('ready');
        } else {
          this._changed.emit();
        }
        // Which models are loaded is part of the models list: ask for it again when that changes.
        if (previous !== null && loadedKey(previous) !== loadedKey(message.status)) {
          this._send({ type: 'models' });
        }
        break;
      }
      case 'models':
        this._models = message.models;
        this._changed.emit();
        break;
      case 'error':
        this._lastError = message.message;
        this._changed.emit();
        this._errorReceived.emit(message.message);
        break;
    }
  }

  private _onCommClose(comm: Kernel.IComm): void {
    if (comm !== this._comm) {
      return;
    }
    // Closed before answering: no "lmnb" target in this kernel. Closed later: lmnb went away.
    this._comm = null;
    this._clearTimer();
    this._status = null;
    this._setState('not-loaded');
  }

  private _onKernelStatus(_kernel: unknown, status: Kernel.Status): void {
    if (GONE.has(status)) {
      if (!this._openWhenIdle) {
        // A restarted kernel starts without lmnb loaded; reopen once it is up to find out.
        this._dropComm(false);
        this._status = null;
        this._openWhenIdle = true;
        this._setState('connecting');
      }
    } else if (status === 'idle' && this._openWhenIdle && this._loading === null) {
      this._open();
    }
  }

  private _onIOPub(_kernel: unknown, msg: KernelMessage.IIOPubMessage): void {
    // The user ran "%load_ext lmnb" (or "import lmnb") in a cell: retry once the kernel is idle.
    if (this._state === 'not-loaded' && msg.header.msg_type === 'execute_input') {
      const code = (msg.content as { code?: unknown }).code;
      if (typeof code === 'string' && /\blmnb\b/.test(code)) {
        this._openWhenIdle = true;
      }
    }
  }

  /** The state once it is no longer "connecting". */
  private _settled(): Promise<ConnectionState> {
    if (this._state !== 'connecting') {
      return Promise.resolve(this._state);
    }
    return new Promise(resolve => this._waiters.push(resolve));
  }

  private _setState(state: ConnectionState): void {
    this._state = state;
    if (state !== 'connecting') {
      for (const resolve of this._waiters.splice(0)) {
        resolve(state);
      }
    }
    if (!this._disposed) {
      this._changed.emit();
    }
  }

  private readonly _kernel: KernelLike;
  private readonly _helloTimeoutMs: number;
  private readonly _changed = new Signal<this, void>(this);
  private readonly _errorReceived = new Signal<this, string>(this);
  private _state: ConnectionState = 'connecting';
  private _status: LmnbStatus | null = null;
  private _models: readonly ModelInfo[] = [];
  private _lastError: string | null = null;
  private _comm: Kernel.IComm | null = null;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _openWhenIdle = false;
  private _loading: Promise<boolean> | null = null;
  private readonly _waiters: ((state: ConnectionState) => void)[] = [];
  private _disposed = false;
}
