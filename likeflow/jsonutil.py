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


# --- type checks of records read from JSON (configs in files, --config) ------------------------

def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v) -> bool:
    return (isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_)) and bool(np.isfinite(v)))


_KINDS = {
    "int": (_is_int, "an integer"),
    "float": (_is_num, "a finite number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, (bool, np.bool_)), "true or false"),
    "ints": (lambda v: isinstance(v, (list, tuple)) and all(_is_int(x) for x in v),
             "a list of integers"),
    "floats": (lambda v: isinstance(v, (list, tuple)) and all(_is_num(x) for x in v),
               "a list of finite numbers"),
    "strs": (lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
             "a list of strings"),
}


def check_types(obj, spec: dict[str, str], where: str) -> None:
    """Raise :class:`~likeflow.errors.LikeflowError` naming the first field of ``obj`` whose
    value is not of its kind in ``spec`` ("int", "float", "str", "bool", "ints", "floats",
    "strs"; a trailing "?" allows None). Integers are not taken for strings, nor 2.5 or true
    for integers: a config value of the wrong type is an error, never a silent conversion."""
    from .errors import LikeflowError

    for name, kind in spec.items():
        v = getattr(obj, name)
        optional = kind.endswith("?")
        test, desc = _KINDS[kind.rstrip("?")]
        if (optional and v is None) or test(v):
            continue
        raise LikeflowError(f"{where}: '{name}' must be {desc}{' or null' if optional else ''}, "
                            f"not {v!r:.60}")
