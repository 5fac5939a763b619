"""The Hugging Face Hub: whether it can be reached, and fetching from it. (Reading and writing models in
transformers' file layout is ``weights.py``.)

Everything the course does offline has a Hub twin (WikiText-103, SST-2, the official roberta-base weights). This
module decides quickly whether the Hub is usable, so that offline a request fails at once with one line that says
what to use instead, rather than after the Hub client's retries with a traceback from deep inside it.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger("roberta_from_scratch")

OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


class OfflineError(ConnectionError):
    """Something from the Hub was asked for and the Hub cannot be used."""


def offline_switch() -> str | None:
    """The offline variable that is set (``HF_HUB_OFFLINE=1``), or None."""
    for var in OFFLINE_SWITCHES:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]}"
    return None


def unreachable_reason() -> str | None:
    """Why the Hub cannot be used now, or None when it can: an offline switch, else one quick connection attempt."""
    switch = offline_switch()
    if switch:
        return f"{switch} is set"
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return f"cannot connect to {host}: {exc.strerror or exc}"
    return None


def looks_like_hub_id(name_or_path) -> bool:
    """'FacebookAI/roberta-base' or 'roberta-base' (and nothing on disk by that name), not a local path."""
    text = str(name_or_path)
    return not Path(text).exists() and not text.startswith((".", "/", "~")) and text.count("/") <= 1


def download(repo_id: str, filenames: list[str], offline_hint: str) -> dict[str, Path]:
    """Fetch files of a Hub model repository (or find them in the local Hub cache when an offline switch is set).

    ``offline_hint`` completes the one-line error: what to use instead when the Hub cannot be used.
    """
    from huggingface_hub import hf_hub_download

    reason = unreachable_reason()
    message = f"{repo_id!r} is on the Hugging Face Hub, which cannot be used here ({reason}); {offline_hint}"
    if reason is not None and offline_switch() is None:
        raise OfflineError(message)  # no network: fail now, not after the client's retries
    try:
        return {name: Path(hf_hub_download(repo_id, name)) for name in filenames}
    except Exception:
        if reason is None:
            raise
        raise OfflineError(message) from None
