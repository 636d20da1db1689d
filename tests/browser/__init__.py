"""Browser tests: a real JupyterLab, driven in headless Debian Chromium through Playwright."""
