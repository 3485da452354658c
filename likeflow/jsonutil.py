"""Strict JSON for records that hold numpy numbers and non-finite floats."""

from __future__ import annotations

import numpy as np


def strict_json(obj):
    """``obj`` with numpy scalars made plain and NaN/inf written as strings ("inf", "nan").

    ``json.dumps`` would otherwise write ``Infinity``/``NaN``, which strict JSON readers refuse.
    """
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if np.isfinite(f) else str(f)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
