"""The notebook face: IPython magics, their parsers, cell output and the JupyterLab comm.

- ``magics``: ``%lm`` / ``%%lm`` (``%load_ext lmnb`` registers them), thin over ``lmnb.api``.
- ``magic_parsers``: their flags, built from ``lmnb.params`` and ``lmnb.options``; ``%lm?``.
- ``display``: what a cell shows while and after a model replies (streamed, escaped HTML).
- ``labcomm``: the comm the JupyterLab extension (status bar, side panel) talks to.

The ipywidgets panes (the studio) are the public ``lmnb.widgets`` package.
"""
