"""Any test executable by name, wherever it comes from.

Most binaries are Go-module builds that :mod:`provision` resolves; the cert-manager
controller is a prebuilt asset or a source build that :mod:`certmanager_assets` (which
builds on provision) resolves. This module sits above both so that neither imports the
other to hand a name over.
"""

from __future__ import annotations

from pathlib import Path

from certdepot.testenv import certmanager_assets, provision


def binary(name: str) -> Path:
    """The path of a provisioned (or overridden) executable; never builds."""
    if name == certmanager_assets.CONTROLLER:
        return certmanager_assets.controller_binary()
    return provision.binary(name)
