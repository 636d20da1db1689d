import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HELLO_TIMEOUT_MS, LOAD_CODE, LmnbConnection } from '../connection';
import { COMM_TARGET } from '../protocol';
import { connect, FakeKernel, flush, statusMessage } from './fakes';

const MODELS = {
  type: 'models',
  models: [
    { name: 'SmolLM2-135M-Instruct', path: '/m/smol.gguf', size_bytes: 98e6, quant: 'Q4_1', source: 'pypi', loaded: true },
    { name: 'gemma-3-270m', path: '/m/gemma.gguf', size_bytes: 250e6, quant: null, source: 'hf', loaded: false }
  ]
};

describe('LmnbConnection', () => {
  let kernel: FakeKernel;

  beforeEach(() => {
    vi.useFakeTimers();
    kernel = new FakeKernel();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('opens the "lmnb" comm with a hello', () => {
    const connection = connect(kernel);
    expect(kernel.comms).toHaveLength(1);
    expect(kernel.lastComm.targetName).toBe(COMM_TARGET);
    expect(kernel.lastComm.opened).toEqual([{ type: 'hello' }]);
    expect(connection.state).toBe('connecting');
  });

  it('status and models messages update it and fire changed', () => {
    const connection = connect(kernel);
    const changed = vi.fn();
    connection.changed.connect(changed);

    kernel.lastComm.receive(statusMessage({ state: 'generating' }));
    expect(connection.state).toBe('ready');
    expect(connection.status?.state).toBe('generating');
    expect(connection.status?.memory_bytes).toBe(412e6);
    expect(changed).toHaveBeenCalledTimes(1);

    kernel.lastComm.receive(MODELS);
    expect(connection.models.map(m => m.name)).toEqual(['SmolLM2-135M-Instruct', 'gemma-3-270m']);
    expect(connection.models[1].quant).toBeNull();
    expect(changed).toHaveBeenCalledTimes(2);

    kernel.lastComm.receive(statusMessage({ state: 'idle', tokens_per_s: 120 }));
    expect(connection.status?.tokens_per_s).toBe(120);
    expect(changed).toHaveBeenCalledTimes(3);
  });

  it('a comm the kernel closes before any status means "not loaded"', () => {
    const connection = connect(kernel);
    kernel.lastComm.closeFromKernel();
    expect(connection.state).toBe('not-loaded');
    expect(connection.status).toBeNull();
  });

  it('no status within 3 s means "not loaded"; a late status is still accepted', () => {
    const connection = connect(kernel);
    vi.advanceTimersByTime(HELLO_TIMEOUT_MS - 1);
    expect(connection.state).toBe('connecting');
    vi.advanceTimersByTime(1);
    expect(connection.state).toBe('not-loaded');
    kernel.lastComm.receive(statusMessage());
    expect(connection.state).toBe('ready');
  });

  it('loadExtension() runs %load_ext lmnb silently, then reopens the comm', async () => {
    const connection = connect(kernel);
    kernel.lastComm.closeFromKernel();
    const first = kernel.lastComm;

    const loaded = connection.loadExtension();
    expect(connection.state).toBe('connecting');
    await flush();
    expect(kernel.executed).toEqual([{ code: LOAD_CODE, silent: true, store_history: false }]);
    expect(kernel.comms).toHaveLength(2);
    expect(kernel.lastComm).not.toBe(first);
    expect(kernel.lastComm.opened).toEqual([{ type: 'hello' }]);

    kernel.lastComm.receive(statusMessage({ model: null, state: 'no model' }));
    await expect(loaded).resolves.toBe(true);
    expect(connection.state).toBe('ready');
  });

  it('a failing %load_ext is reported and leaves it "not loaded"', async () => {
    const connection = connect(kernel);
    kernel.lastComm.closeFromKernel();
    kernel.executeReply = { status: 'error', ename: 'ModuleNotFoundError', evalue: "No module named 'lmnb'" };
    await expect(connection.loadExtension()).resolves.toBe(false);
    expect(connection.state).toBe('not-loaded');
    expect(connection.lastError).toContain("No module named 'lmnb'");
    expect(kernel.comms).toHaveLength(1);
  });

  it('load() sends {type: "load", model}', async () => {
    const connection = connect(kernel);
    kernel.lastComm.receive(statusMessage());
    await expect(connection.load('gemma-3-270m')).resolves.toBe(true);
    expect(kernel.lastComm.sent).toEqual([{ type: 'load', model: 'gemma-3-270m' }]);
  });

  it('the other commands send their messages', async () => {
    const connection = connect(kernel);
    kernel.lastComm.receive(statusMessage());
    await connection.unload();
    await connection.unload('default');
    await connection.unload('g');
    await connection.serve();
    await connection.serve(8123);
    await connection.stopServer();
    await connection.refreshModels();
    expect(kernel.lastComm.sent).toEqual([
      { type: 'unload' },
      { type: 'unload' },
      { type: 'unload_model', name: 'g' },
      { type: 'serve' },
      { type: 'serve', port: 8123 },
      { type: 'stop_server' },
      { type: 'models' }
    ]);
  });

  it('a command while not loaded loads lmnb first', async () => {
    const connection = connect(kernel);
    kernel.lastComm.closeFromKernel();
    const sent = connection.serve();
    await flush();
    expect(kernel.executed).toHaveLength(1);
    kernel.lastComm.receive(statusMessage());
    await expect(sent).resolves.toBe(true);
    expect(kernel.lastComm.sent).toEqual([{ type: 'serve' }]);
  });

  it('error messages are stored and signalled', () => {
    const connection = connect(kernel);
    const errors = vi.fn();
    connection.errorReceived.connect((_sender, message) => errors(message));
    kernel.lastComm.receive(statusMessage());
    kernel.lastComm.receive({ type: 'error', message: 'port 8000 is in use' });
    expect(connection.lastError).toBe('port 8000 is in use');
    expect(errors).toHaveBeenCalledWith('port 8000 is in use');
    connection.clearError();
    expect(connection.lastError).toBeNull();
  });

  it('ignores unknown and malformed messages', () => {
    const connection = connect(kernel);
    const changed = vi.fn();
    connection.changed.connect(changed);
    kernel.lastComm.receive({ type: 'something-new' });
    kernel.lastComm.receive({ nothing: true });
    expect(changed).not.toHaveBeenCalled();
    kernel.lastComm.receive({ type: 'status', memory_bytes: 'lots', state: 42 });
    expect(connection.status?.memory_bytes).toBe(0);
    expect(connection.status?.state).toBe('no model');
  });

  it('asks for the models again when the loaded model changes', () => {
    connect(kernel);
    kernel.lastComm.receive(statusMessage({ model: null, state: 'no model' }));
    kernel.lastComm.receive(statusMessage({ model: null, state: 'no model' }));
    expect(kernel.lastComm.sent).toEqual([]);
    kernel.lastComm.receive(statusMessage({ model: 'gemma-3-270m' }));
    expect(kernel.lastComm.sent).toEqual([{ type: 'models' }]);
  });

  it('asks for the models again when a model is loaded or unloaded beside the default', () => {
    connect(kernel);
    const smol = { name: 'default', model: 'SmolLM2', model_bytes: 1, on_demand: false, state: 'idle' };
    kernel.lastComm.receive(statusMessage({ model: 'SmolLM2', models: [smol] }));
    kernel.lastComm.receive(statusMessage({ model: 'SmolLM2', models: [{ ...smol, state: 'generating' }] }));
    expect(kernel.lastComm.sent).toEqual([]);
    const g = { name: 'g', model: 'gemma', model_bytes: 2, on_demand: false, state: 'idle' };
    kernel.lastComm.receive(statusMessage({ model: 'SmolLM2', models: [smol, g] }));
    expect(kernel.lastComm.sent).toEqual([{ type: 'models' }]);
    kernel.lastComm.receive(statusMessage({ model: 'SmolLM2', models: [smol] }));
    expect(kernel.lastComm.sent).toEqual([{ type: 'models' }, { type: 'models' }]);
  });

  it('parses the loaded models; an older kernel gets its default model listed', () => {
    const connection = connect(kernel);
    kernel.lastComm.receive({
      ...statusMessage(),
      models: [
        { name: 'default', model: 'SmolLM2', model_bytes: 98e6, on_demand: false, state: 'idle' },
        { name: 'g', model_bytes: 'big', state: 3, on_demand: 'yes' },
        { model: 'nameless' },
        'junk'
      ]
    });
    expect(connection.status?.models).toEqual([
      { name: 'default', model: 'SmolLM2', model_bytes: 98e6, on_demand: false, state: 'idle' },
      { name: 'g', model: 'g', model_bytes: 0, on_demand: false, state: 'idle' }
    ]);
    const { models: _models, ...old } = statusMessage({ model: 'SmolLM2', model_bytes: 98e6 });
    kernel.lastComm.receive(old);
    expect(connection.status?.models).toEqual([
      { name: 'default', model: 'SmolLM2', model_bytes: 98e6, on_demand: false, state: 'idle' }
    ]);
    const { models: _none, ...empty } = statusMessage({ model: null, state: 'no model' });
    kernel.lastComm.receive(empty);
    expect(connection.status?.models).toEqual([]);
  });

  it('reconnects after a kernel restart', () => {
    const connection = connect(kernel);
    kernel.lastComm.receive(statusMessage());
    kernel.setStatus('restarting');
    expect(connection.state).toBe('connecting');
    expect(connection.status).toBeNull();
    kernel.setStatus('starting');
    expect(kernel.comms).toHaveLength(1);
    kernel.setStatus('idle');
    expect(kernel.comms).toHaveLength(2);
    expect(kernel.lastComm.opened).toEqual([{ type: 'hello' }]);
  });

  it('waits for a starting kernel before saying hello', () => {
    kernel.status = 'starting';
    const connection = connect(kernel);
    expect(kernel.comms).toHaveLength(0);
    vi.advanceTimersByTime(10 * HELLO_TIMEOUT_MS);
    expect(connection.state).toBe('connecting');
    kernel.setStatus('idle');
    expect(kernel.comms).toHaveLength(1);
  });

  it('retries when the user runs %load_ext lmnb in a cell', () => {
    const connection = connect(kernel);
    kernel.lastComm.closeFromKernel();
    kernel.setStatus('busy');
    kernel.ranCell('x = 1');
    kernel.setStatus('idle');
    expect(kernel.comms).toHaveLength(1);
    kernel.setStatus('busy');
    kernel.ranCell('%load_ext lmnb');
    kernel.setStatus('idle');
    expect(kernel.comms).toHaveLength(2);
    expect(connection.state).toBe('connecting');
  });

  it('dispose closes the comm and goes quiet', () => {
    const connection: LmnbConnection = connect(kernel);
    const comm = kernel.lastComm;
    const changed = vi.fn();
    connection.changed.connect(changed);
    connection.dispose();
    expect(comm.closedByFrontEnd).toBe(true);
    comm.receive(statusMessage());
    kernel.setStatus('restarting');
    expect(changed).not.toHaveBeenCalled();
    expect(connection.isDisposed).toBe(true);
  });
});
