// A fake kernel and comm with just what LmnbConnection uses, plus helpers that play the kernel side.

import type { Kernel, KernelMessage } from '@jupyterlab/services';
import { Signal } from '@lumino/signaling';
import { type KernelLike, LmnbConnection } from '../connection';
import type { LmnbStatus } from '../protocol';

const done = (): { done: Promise<void> } => ({ done: Promise.resolve() });

export class FakeComm {
  constructor(readonly targetName: string) {}

  onMsg: (msg: KernelMessage.ICommMsgMsg) => void | PromiseLike<void> = () => undefined;
  onClose: (msg: KernelMessage.ICommCloseMsg) => void | PromiseLike<void> = () => undefined;
  isDisposed = false;
  opened: unknown[] = [];
  sent: unknown[] = [];
  closedByFrontEnd = false;

  open(data: unknown): { done: Promise<void> } {
    this.opened.push(data);
    return done();
  }

  send(data: unknown): { done: Promise<void> } {
    this.sent.push(data);
    return done();
  }

  close(): { done: Promise<void> } {
    this.closedByFrontEnd = true;
    this.isDisposed = true;
    return done();
  }

  /** The kernel sends a comm message. */
  receive(data: object): void {
    void this.onMsg({ content: { comm_id: 'x', data } } as unknown as KernelMessage.ICommMsgMsg);
  }

  /** The kernel closes the comm (what ipykernel does for an unknown target). */
  closeFromKernel(): void {
    void this.onClose({ content: { comm_id: 'x', data: {} } } as unknown as KernelMessage.ICommCloseMsg);
    this.isDisposed = true;
  }
}

export type ExecuteReply = { status: 'ok' } | { status: 'error'; ename: string; evalue: string };

export class FakeKernel {
  status: Kernel.Status = 'idle';
  readonly statusChanged = new Signal<this, Kernel.Status>(this);
  readonly iopubMessage = new Signal<this, KernelMessage.IIOPubMessage>(this);
  readonly comms: FakeComm[] = [];
  readonly executed: KernelMessage.IExecuteRequestMsg['content'][] = [];
  /** What the next requestExecute replies. */
  executeReply: ExecuteReply = { status: 'ok' };

  createComm(targetName: string): FakeComm {
    const comm = new FakeComm(targetName);
    this.comms.push(comm);
    return comm;
  }

  requestExecute(content: KernelMessage.IExecuteRequestMsg['content']): {
    done: Promise<{ content: ExecuteReply }>;
  } {
    this.executed.push(content);
    return { done: Promise.resolve({ content: this.executeReply }) };
  }

  setStatus(status: Kernel.Status): void {
    this.status = status;
    this.statusChanged.emit(status);
  }

  /** A cell ran this code (what the notebook sees on iopub). */
  ranCell(code: string): void {
    this.iopubMessage.emit({
      header: { msg_type: 'execute_input' },
      content: { code, execution_count: 1 }
    } as unknown as KernelMessage.IIOPubMessage);
  }

  get lastComm(): FakeComm {
    const comm = this.comms[this.comms.length - 1];
    if (comm === undefined) {
      throw new Error('no comm was opened');
    }
    return comm;
  }

  asKernel(): KernelLike {
    return this as unknown as KernelLike;
  }
}

export function connect(kernel: FakeKernel): LmnbConnection {
  return new LmnbConnection(kernel.asKernel());
}

/** A status message; unless `overrides.models` says otherwise, the default model alone is loaded (if any). */
export function statusMessage(overrides: Partial<LmnbStatus> = {}): { type: 'status' } & LmnbStatus {
  const message: { type: 'status' } & LmnbStatus = {
    type: 'status',
    model: 'SmolLM2-135M-Instruct',
    state: 'idle',
    load_progress: null,
    server_url: null,
    tokens_per_s: 97.3,
    memory_bytes: 412e6,
    model_bytes: 98e6,
    queue_depth: 0,
    parameters: {
      temperature: 0.7,
      top_p: 0.95,
      top_k: 40,
      min_p: 0.05,
      repeat_penalty: 1.1,
      max_tokens: 512,
      n_ctx: 4096,
      n_parallel: 1
    },
    version: '0.1.0',
    models: [],
    ...overrides
  };
  if (overrides.models === undefined && message.model !== null && !['loading', 'no model'].includes(message.state)) {
    message.models = [
      { name: 'default', model: message.model, model_bytes: message.model_bytes, on_demand: false, state: message.state }
    ];
  }
  return message;
}

export function status(overrides: Partial<LmnbStatus> = {}): LmnbStatus {
  const { type: _type, ...rest } = statusMessage(overrides);
  return rest;
}

/** Let queued promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) {
    await Promise.resolve();
  }
}
