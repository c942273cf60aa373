"""A lesson's headline numbers, written as JSON for CI to read (lesson 01 onwards)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars become plain Python numbers so json can write them."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_metrics(path: str | os.PathLike | None, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write `metrics` to `path` as JSON (nothing is written when `path` is None).

    Returns the metrics as plain Python values. A NaN or infinite loss is written as null,
    which JSON allows, so a test reading the file sees a diverged run for what it is.
    """
    plain = _plain(metrics)

    def finite(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return v

    plain = finite(plain)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(plain, indent=2) + "\n", encoding="utf-8")
    return plain
