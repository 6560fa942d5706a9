"""STAR-style auto-renewal (RFC 8739) of delegated orders."""

from __future__ import annotations

from certdepot.repository.state import Repo


async def run_once(repo: Repo) -> None:
    return None
