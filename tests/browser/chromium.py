"""Debian's Chromium as the browser tests and the UI benchmark launch it.

Chromium runs headless as root, so it needs ``--no-sandbox``; the background-networking flags
keep it from reaching for Google's hosts, which this machine's closed network refuses
(DESIGN.md §9). Playwright drives the system's ``chromium`` through ``executable_path``: no
browser is downloaded.
"""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
"""The system's Chromium, or ``None`` when it is not installed."""
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
