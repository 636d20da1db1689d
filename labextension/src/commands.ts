// The commands (also in the command palette, category "lmnb"). Each one loads lmnb in the kernel
// first when needed (LmnbConnection.ensureReady runs %load_ext lmnb).

import type { JupyterFrontEnd } from '@jupyterlab/application';
import { type ICommandPalette, InputDialog, Notification } from '@jupyterlab/apputils';
import { type INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import type { LmnbConnection } from './connection';
import type { CurrentKernel } from './current';

export const CommandIDs = {
  loadModel: 'lmnb:load-model',
  insertChatCell: 'lmnb:insert-chat-cell',
  startServer: 'lmnb:start-server',
  openPanel: 'lmnb:open-panel'
} as const;

export const CHAT_CELL_SOURCE = '%%lm chat\n';
const CATEGORY = 'lmnb';

/** The current kernel's connection with lmnb loaded, or null (and a notification saying why). */
async function readyConnection(current: CurrentKernel): Promise<LmnbConnection | null> {
  const connection = current.connection;
  if (connection === null) {
    Notification.warning('lmnb: open a notebook with a running kernel first.', { autoClose: 5000 });
    return null;
  }
  if (await connection.ensureReady()) {
    return connection;
  }
  Notification.error(connection.lastError ?? 'lmnb could not be loaded in this kernel.', {
    autoClose: 8000
  });
  return null;
}

export function registerCommands(
  app: JupyterFrontEnd,
  current: CurrentKernel,
  tracker: INotebookTracker,
  openPanel: () => void,
  palette: ICommandPalette | null
): void {
  const hasKernel = (): boolean => current.connection !== null;

  app.commands.addCommand(CommandIDs.loadModel, {
    label: 'lmnb: Load model…',
    caption: 'Load a local GGUF model (or a path / Hugging Face repo) in the notebook kernel',
    isEnabled: hasKernel,
    execute: async () => {
      const connection = await readyConnection(current);
      if (connection === null) {
        return;
      }
      const names = connection.models.map(model => model.name);
      const loaded = connection.models.find(model => model.loaded)?.name;
      const result = await InputDialog.getItem({
        title: 'Load model',
        label: 'A local model, or type a path or a Hugging Face repo:',
        items: names,
        current: loaded ?? (names.length > 0 ? 0 : ''),
        editable: true,
        placeholder: 'e.g. bartowski/Qwen2.5-0.5B-Instruct-GGUF'
      });
      const name = result.value?.trim() ?? '';
      if (result.button.accept && name !== '') {
        await connection.load(name);
      }
    }
  });

  app.commands.addCommand(CommandIDs.insertChatCell, {
    label: 'lmnb: Insert chat cell',
    caption: 'Insert a %%lm chat cell below the active cell',
    isEnabled: () => tracker.currentWidget !== null,
    execute: async () => {
      const panel = tracker.currentWidget;
      if (panel === null) {
        return;
      }
      // The cell is useful only with lmnb loaded; load it meanwhile, without blocking the insert.
      void current.connection?.ensureReady();
      const notebook = panel.content;
      NotebookActions.insertBelow(notebook);
      if (notebook.activeCell?.model.type !== 'code') {
        NotebookActions.changeCellType(notebook, 'code');
      }
      const cell = notebook.activeCell;
      if (cell === null) {
        return;
      }
      cell.model.sharedModel.setSource(CHAT_CELL_SOURCE);
      app.shell.activateById(panel.id);
      await cell.ready; // the editor exists once the cell is rendered
      // Activation is processed on the next animation frame and focuses the notebook in command
      // mode: enter edit mode after it, not before.
      await new Promise<void>(resolve => requestAnimationFrame(() => resolve()));
      notebook.mode = 'edit';
      cell.editor?.setCursorPosition({ line: 1, column: 0 });
      cell.editor?.focus();
    }
  });

  app.commands.addCommand(CommandIDs.startServer, {
    label: 'lmnb: Start server',
    caption: "Start the OpenAI-compatible server in the notebook's kernel",
    isEnabled: hasKernel,
    execute: async () => {
      const connection = await readyConnection(current);
      if (connection !== null) {
        await connection.serve();
      }
    }
  });

  app.commands.addCommand(CommandIDs.openPanel, {
    label: 'lmnb: Show Local LLM panel',
    execute: openPanel
  });

  for (const command of Object.values(CommandIDs)) {
    palette?.addItem({ command, category: CATEGORY });
  }
}
