// Plugin wiring: the current-kernel tracker, the status bar item, the side panel and the commands.

import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Clipboard, ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { CommandIDs, registerCommands } from './commands';
import { CurrentKernel } from './current';
import { lmnbIcon } from './icon';
import { LocalLLMPanel, PANEL_ID } from './panel';
import { StatusItem } from './statusitem';

function activate(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  statusBar: IStatusBar | null,
  palette: ICommandPalette | null,
  restorer: ILayoutRestorer | null
): void {
  const current = new CurrentKernel(tracker);

  const panel = new LocalLLMPanel(current, { copy: text => Clipboard.copyToSystem(text) });
  panel.title.icon = lmnbIcon;
  app.shell.add(panel, 'right', { rank: 900 });
  restorer?.add(panel, PANEL_ID);
  const openPanel = (): void => app.shell.activateById(PANEL_ID);

  registerCommands(app, current, tracker, openPanel, palette);

  // Kernel-side errors (a failed load, a busy port...) also reach users with the panel closed.
  current.errorReceived.connect((_sender, message) => {
    Notification.error(`lmnb: ${message}`, { autoClose: 8000 });
  });

  if (statusBar !== null) {
    const item = new StatusItem(current, kind => {
      const connection = current.connection;
      if (kind === 'not-loaded' && connection !== null) {
        void connection.loadExtension().then(ok => {
          if (!ok) {
            openPanel(); // the panel shows why
          }
        });
      } else {
        void app.commands.execute(CommandIDs.openPanel);
      }
    });
    statusBar.registerStatusItem('lmnb-labextension:status', {
      item,
      align: 'left',
      rank: 100,
      // No notebook, or its kernel is not running: nothing to show.
      isActive: () => current.connection !== null,
      activeStateChanged: current.connectionChanged
    });
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'lmnb-labextension:plugin',
  description: "lmnb in JupyterLab: the notebook kernel's local model in the status bar and a side panel.",
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar, ICommandPalette, ILayoutRestorer],
  activate
};

export default plugin;
