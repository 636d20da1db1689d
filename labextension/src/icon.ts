// The side bar icon: a chip. Class jp-icon3 lets JupyterLab's themes recolour it.

import { LabIcon } from '@jupyterlab/ui-components';

const svg =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
  '<path class="jp-icon3" fill="#616161" d="M9 2v2H7a3 3 0 0 0-3 3v2H2v2h2v2H2v2h2v2a3 3 0 0 0 3 ' +
  '3h2v2h2v-2h2v2h2v-2h2a3 3 0 0 0 3-3v-2h2v-2h-2v-2h2V9h-2V7a3 3 0 0 0-3-3h-2V2h-2v2h-2V2H9zM7 ' +
  '6h10a1 1 0 0 1 1 1v10a1 1 0 0 1-1 1H7a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1zm2 3v6h6V9H9z"/></svg>';

export const lmnbIcon = new LabIcon({ name: 'lmnb-labextension:chip', svgstr: svg });
