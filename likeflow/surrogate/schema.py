"""The versioned JSON schemas of a surrogate file's records, and the one read policy.

A surrogate file holds four JSON records: ``config`` (the flow), ``training`` (seed, training
config, data, history, training region), ``validation`` (the summary at save time) and, from
version 2, ``provenance`` (who wrote it, when, with what). Each has a JSON Schema in
``likeflow/schemas/<version>/<record>.json`` (versioned like pyhf's ``schemas/1.0.0/``); the
file's root attribute ``format_version`` is the major number of the schema version it was
written with (``schema_version`` holds all of it).

The read policy, the same for every record and every key: a file is checked against the schemas
of its own version; a key the schema does not know, a missing required key or a value of the
wrong type is an error naming the record and the field. Version 2 (this likeflow writes it)
knows every key likeflow writes and nothing else. Version 1 files were written before the
schemas, by builds that added keys without changing the version: their schema checks the keys
that are read and lets others be; :func:`upgrade` then carries their legacy keys to where
version 2 keeps them (the seed) and drops what version 2 does not know, so that what the rest
of likeflow sees always has the current shape.

Example:
    >>> check("config", {"dim": 2}, SCHEMA_VERSION)
    Traceback (most recent call last):
    ...
    likeflow.errors.LikeflowError: config: 'flow' is missing
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources

from ..errors import LikeflowError

#: the schema version this likeflow writes
SCHEMA_VERSION = "2.7.0"
#: the file format version it writes: the schema's major number
FORMAT_VERSION = int(SCHEMA_VERSION.split(".")[0])
#: format version -> the schema versions its files follow, oldest first (a minor version only
#: adds optional fields: 2.1.0 the training record's ``devices`` and ``data.stream``; 2.2.0
#: the density term's ``density_weight``, ``val_nll``, ``val_residual_std``, ``density_term``,
#: ``data.anchors`` and the validation's ``residual``; 2.3.0 the validation's ``exact``, the
#: check against the pyhf likelihood; 2.4.0 the training record's ``refinement``; 2.5.0 the
#: config's ``whiten``; 2.6.0 the refinement's ``q_max``; 2.7.0 its ``density_weight``)
SCHEMAS_OF_FORMAT = {1: ("1.0.0",),
                     2: ("2.0.0", "2.1.0", "2.2.0", "2.3.0", "2.4.0", "2.5.0", "2.6.0",
                         "2.7.0")}
#: the records of a file of each format version
RECORDS = {1: ("config", "training", "validation"),
           2: ("config", "training", "validation", "provenance")}


@functools.cache
def schema(record: str, version: str = SCHEMA_VERSION) -> dict:
    """The JSON Schema of ``record`` at ``version``, from the package's data."""
    path = resources.files("likeflow") / "schemas" / version / f"{record}.json"
    return json.loads(path.read_text())


@functools.cache
def _validator(record: str, version: str):
    import jsonschema

    s = schema(record, version)
    cls = jsonschema.validators.validator_for(s)
    return cls(s)


def version_of(format_version: int, schema_version: str | None) -> str:
    """The schema a file of ``format_version`` is read with: the version it names if this
    likeflow knows it, else the newest of its format (a file of a newer minor version then
    reads as long as it holds no field added since)."""
    known = SCHEMAS_OF_FORMAT[format_version]
    return schema_version if schema_version in known else known[-1]


def check(record: str, value, version: str = SCHEMA_VERSION) -> None:
    """Raise :class:`LikeflowError` naming ``record`` and the field where ``value`` does not
    follow the schema (the most relevant error of all, one line)."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(record, version).iter_errors(value))
    if error is None:
        return
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator in ("required", "dependentRequired"):
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        field = f"{where}.{missing}" if where else missing
        raise LikeflowError(f"{record}: '{field}' is missing")
    if error.validator == "additionalProperties":
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        field = ".".join(filter(None, [where, extra[0] if extra else ""]))
        newer = "; written by a newer likeflow?" if version == SCHEMAS_OF_FORMAT[
            int(version.split(".")[0])][-1] and version != "1.0.0" else ""
        raise LikeflowError(f"{record}: unknown field '{field}' (schema {version} has no such "
                            f"field{newer})")
    value_text = json.dumps(error.instance)
    if len(value_text) > 60:
        value_text = value_text[:57] + "..."
    raise LikeflowError(f"{record}: field '{where or '(the record)'}' = {value_text} is not "
                        f"valid ({_reason(error)})")


def _reason(error) -> str:
    """A short reason: what the schema asks for, not jsonschema's full sentence."""
    v, s = error.validator, error.schema
    if v == "type":
        return f"must be {_types(s['type'])}"
    if v == "enum":
        return "must be one of " + ", ".join(json.dumps(x) for x in s["enum"])
    if v in ("minimum", "exclusiveMinimum", "maximum", "minItems", "maxItems"):
        return f"{v} {s[v]}"
    if v == "oneOf":
        return "must be a number, or \"inf\", \"-inf\" or \"nan\""
    return error.message.splitlines()[0][:80]


def _types(t) -> str:
    names = {"integer": "an integer", "number": "a number", "string": "a string",
             "boolean": "true or false", "array": "a list", "object": "an object",
             "null": "null"}
    return " or ".join(names.get(x, x) for x in ([t] if isinstance(t, str) else t))


def upgrade(records: dict, format_version: int) -> dict:
    """Records of a file of ``format_version`` in the shape of the current schema (checked).

    Version 1: config keys added while version 1 was written get the value their absence
    meant; the seed, kept in the split or the training config by early files, moves to the
    training record's own ``seed``; keys version 2 does not know are dropped; a file without
    provenance gets none (``{}`` is not written back: :func:`provenance` makes a new one when
    the surrogate is saved again).
    """
    if format_version == FORMAT_VERSION:
        return records  # the minor versions of a format only add optional fields
    out = copy.deepcopy(records)
    _fill_added_config_keys(out["config"])
    training = out.get("training", {})
    legacy = [training.get("config", {}).pop("seed", None),
              training.get("data", {}).get("split", {}).pop("seed", None)]
    if "seed" not in training:
        seed = next((s for s in legacy if s is not None), None)
        if seed is not None:
            training["seed"] = seed
    for name in ("config", "training", "validation"):
        out[name] = _prune(out[name], schema(name), schema(name))
        check(name, out[name])
    return out


def _fill_added_config_keys(config: dict) -> None:
    """Keys the config gained while version 1 was written (``bound_map``, ``softclip``,
    ``marginal_spline``): a file without one was written before it existed, and means what
    :class:`likeflow.flows.config.FlowConfig`'s default for such files says (sigmoid bound maps, no
    soft clip, no marginal spline)."""
    import dataclasses

    from ..flows.config import FlowConfig

    for f in dataclasses.fields(FlowConfig):
        if f.name in config or f.name not in schema("config").get("required", ()):
            continue
        if f.default is not dataclasses.MISSING:
            config[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            config[f.name] = f.default_factory()


def _prune(value, node: dict, root: dict):
    """``value`` without the object keys ``node`` (a schema) does not know, recursively."""
    if "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if isinstance(value, dict) and "properties" in node:
        props = node["properties"]
        if node.get("additionalProperties", True) is False:
            value = {k: v for k, v in value.items() if k in props}
        return {k: _prune(v, props.get(k, {}), root) for k, v in value.items()}
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_prune(v, node["items"], root) for v in value]
    return value


def provenance(backend: str) -> dict:
    """The provenance record of a file written now, by ``backend``."""
    import datetime
    import platform
    import sys

    import numpy as np

    from .._version import __version__

    rec = {"likeflow_version": __version__,
           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "backend": backend, "numpy_version": np.__version__,
           "python": sys.version.split()[0], "platform": platform.platform(terse=True),
           "tensorflow_version": None, "tensorflow_probability_version": None}
    if backend == "tensorflow":
        from ..tfsetup import tf, tfp
        rec["tensorflow_version"] = tf.__version__
        rec["tensorflow_probability_version"] = tfp.__version__
    return rec
