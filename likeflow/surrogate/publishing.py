"""A surrogate bundle for publication (``likeflow publish``) and its check (``likeflow verify``).

The LHC Reinterpretation Forum (arXiv:2003.07868) and the Les Houches guide to publishing ML
models (arXiv:2312.14575) ask for the model together with its inputs, its validity region, its
validation against the original and usage instructions. :func:`publish` writes one folder that
HEPData can take as a resource:

- the surrogate and its Asimov partner (``*.likeflow.h5``, readable without TensorFlow) and
  their ONNX graphs (``*.onnx``, float64: the log density under any ONNX runtime);
- ``card.json`` (JSON Schema ``likeflow/schemas/card/1.0.0.json``): the parameters with names,
  bounds and training range, the POIs, the flow, the data's provenance (the workspace and its
  SHA-256 where the surrogate was checked against one), the verdict and metrics, the
  exact-vs-surrogate table, and the limits computed from the files;
- ``README.md`` with working snippets for likeflow without TensorFlow, onnxruntime and spey;
- the validation report (``report/``) where the surrogate's is found;
- ``SHA256SUMS`` of every file.

:func:`verify` checks the checksums (a changed, missing or extra file is named), the card
against its schema, and recomputes the card's limits from the files with the numpy reader.

Example:
    >>> card = publish("obs.likeflow.h5", "bundle")      # doctest: +SKIP
    >>> verify("bundle").ok                              # doctest: +SKIP
    True
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import dataclass, field

from .._version import __version__
from ..errors import LikeflowError
from ..fileio import file_sha256

CARD_VERSION = "1.0.0"
SUMS = "SHA256SUMS"
# the card's limits are recomputed by verify to this relative tolerance
REPRODUCE_RTOL = 1e-6
LIMIT_SEED = 0


def card_schema() -> dict:
    from importlib import resources
    return json.loads((resources.files("likeflow") / "schemas" / "card" /
                       f"{CARD_VERSION}.json").read_text())


def bundle_limits(surrogate: str, partner: str | None, poi: str) -> dict:
    """The limits a card states, computed from the files with the numpy reader (the same
    code and seed in :func:`publish` and :func:`verify`): the q~ profile limit, the credible
    limit and, with the partner, the CLs observed limit and expected band."""
    from .loading import load
    from ..infer.profiling import profile
    sur = load(surrogate, backend="numpy")
    part = load(partner, backend="numpy") if partner else None
    res = profile(sur, poi, asimov=part, seed=LIMIT_SEED)
    out = {"poi": poi, "cl": res.cl, "seed": LIMIT_SEED, "backend": "numpy",
           "profile": res.upper_limit.value,
           "credible": None if res.bayesian_upper_limit is None else res.bayesian_upper_limit.value}
    if res.cls is not None:
        out["cls_observed"] = res.cls.observed
        out["cls_expected"] = list(res.cls.expected)
    return out


def publish(surrogate, out_dir, *, partner=None, progress=None) -> dict:
    """Write the publication bundle of ``surrogate`` (a file) into ``out_dir`` (new or
    empty); return the card.

    ``partner``: its Asimov partner (default: the one the file records)."""
    from ..fileio import write_text
    from .loading import load
    from ..flows.onnx_export import export_onnx
    say = progress or (lambda m: None)
    src = os.fspath(surrogate)
    sur = load(src, backend="numpy")
    if sur.kind != "flow":
        raise LikeflowError(f"{src}: a piecewise surrogate is not published as a bundle (its "
                            "flows have no single ONNX graph)")
    if partner is None and sur.training.get("asimov_partner"):
        rec = sur.training["asimov_partner"]
        partner = rec if os.path.isabs(rec) else os.path.join(os.path.dirname(
            os.path.abspath(src)), rec)
    if partner is not None and not os.path.exists(partner):
        raise LikeflowError(f"{src}: its Asimov partner {partner} is missing")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise LikeflowError(f"{out_dir}: the bundle folder must be new or empty")
    if not sur.poi:
        raise LikeflowError(f"{src}: no POI recorded; a bundle states limits on one")
    names, loaded = {"surrogate": os.path.basename(src)}, {"surrogate": sur}
    if partner is not None:
        names["partner"] = os.path.basename(os.fspath(partner))
        if names["partner"] == names["surrogate"]:
            raise LikeflowError("the surrogate and its partner have the same file name")
        loaded["partner"] = load(partner, backend="numpy")
        if loaded["partner"].names != sur.names:
            raise LikeflowError(f"{partner}: the Asimov partner has other parameters than {src}")
    os.makedirs(out_dir, exist_ok=True)   # after every check: a refused bundle leaves nothing
    say("copying the surrogate files")
    shutil.copyfile(src, os.path.join(out_dir, names["surrogate"]))
    if partner is not None:
        shutil.copyfile(partner, os.path.join(out_dir, names["partner"]))
        _link_partner(os.path.join(out_dir, names["surrogate"]), names["partner"])
    say("exporting the ONNX graphs")
    onnx = {}
    for key, name in names.items():
        graph = name[:-len(".likeflow.h5")] if name.endswith(".likeflow.h5") else \
            os.path.splitext(name)[0]
        onnx[key] = graph + ".onnx"
        export_onnx(loaded[key], os.path.join(out_dir, onnx[key]))   # the copies' weights
    report = _report_of(src)
    if report:
        shutil.copytree(report, os.path.join(out_dir, "report"))
    poi = sur.poi[0]
    say(f"computing the limits on {poi} from the bundle's files (numpy reader)")
    limits = bundle_limits(os.path.join(out_dir, names["surrogate"]),
                           os.path.join(out_dir, names["partner"]) if partner else None, poi)
    card = _card(sur, names, onnx, limits, bool(report))
    _check_card(card, "card.json")
    write_text(os.path.join(out_dir, "card.json"), json.dumps(card, indent=1))
    write_text(os.path.join(out_dir, "README.md"), bundle_readme(card))
    write_text(os.path.join(out_dir, SUMS), "".join(
        f"{file_sha256(os.path.join(out_dir, p))}  {p}\n" for p in _files(out_dir)))
    return card


def _link_partner(path: str, partner_name: str) -> None:
    """The copied surrogate names its partner by the bundle's file name."""
    from .loading import load
    sur = load(path)
    if sur.training.get("asimov_partner") != partner_name:
        sur.training = dict(sur.training, asimov_partner=partner_name)
        sur.save(path)


def _report_of(src: str) -> str | None:
    root = src[:-3] if src.endswith(".h5") else src
    report = root + "-report"
    return report if os.path.isfile(os.path.join(report, "index.html")) else None


def _files(folder: str) -> list[str]:
    out = []
    for root, _, files in os.walk(folder):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/")
            if rel != SUMS:
                out.append(rel)
    return sorted(out)


def _card(sur, names: dict, onnx: dict, limits: dict, report: bool) -> dict:
    from ..jsonutil import strict_json
    s = sur.summary()
    v = sur.validation
    exact = v.get("exact")
    return strict_json({
        "card_version": CARD_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "likeflow_version": __version__,
        "files": {"surrogate": names["surrogate"], "partner": names.get("partner"),
                  "onnx": onnx.get("surrogate"), "partner_onnx": onnx.get("partner"),
                  "report": "report/index.html" if report else None},
        "parameters": s["parameters"],
        "poi": list(sur.poi),
        "flow": s["flow"],
        "data": dict(s["data"], file=os.path.basename(str(s["data"].get("file", "")))),
        "provenance": {"workspace": None if exact is None else os.path.basename(
                           str(exact["workspace"])),
                       "patch": None if exact is None or not exact.get("patch") else
                       os.path.basename(str(exact["patch"])),
                       "workspace_sha256": None if exact is None else exact.get(
                           "workspace_sha256"),
                       "likeflow": s["provenance"]},
        "training": s["training"],
        "validation": {"verdict": v.get("verdict"), "verdict_reasons": v.get("verdict_reasons",
                                                                              []),
                       "metrics": v.get("rows", []), "flagged": v.get("flagged", [])},
        "exact_check": exact,
        "limits": limits,
    })


def _check_card(card: dict, where: str) -> None:
    import jsonschema
    validator = jsonschema.Draft202012Validator(card_schema())
    err = next(iter(sorted(validator.iter_errors(card), key=lambda e: e.path)), None)
    if err is not None:
        at = "/".join(str(p) for p in err.absolute_path) or "(top)"
        raise LikeflowError(f"{where}: does not follow the card schema {CARD_VERSION} at {at}: "
                            f"{err.message[:160]}")


def bundle_readme(card: dict) -> str:
    """The bundle's README: what it holds and snippets that run in the bundle's folder."""
    f, poi, lim = card["files"], card["poi"][0], card["limits"]
    pair = f["partner"] is not None
    cls = (f"CLs observed {lim['cls_observed']:.4g}, expected "
           f"{lim['cls_expected'][2]:.4g}" if pair and lim.get("cls_observed") else "")
    ex = card.get("exact_check")
    exact_line = ("" if not ex else
                  f"Checked against the pyhf workspace `{card['provenance']['workspace']}` "
                  f"(SHA-256 `{card['provenance']['workspace_sha256']}`): exact verdict "
                  f"**{ex['verdict']}**, profile within {ex['max_profile_difference']:.3f} in "
                  "q where the exact q < 6; the table is `card.json`'s `exact_check`.\n")
    spey = "" if not pair else f'''
### spey

```python
import spey
model = spey.get_backend("likeflow")(surrogate="{f['surrogate']}", asimov="{f['partner']}",
                                     analysis="bundle", xsection=1.0)
print("CLs upper limit on the POI:", model.poi_upper_limit())
```
'''
    rows = "".join(f"| `{name}` | {what} |\n" for name, what in (
        (f["surrogate"], "the surrogate (HDF5; `likeflow info` shows it)"),
        (f["partner"], "its background-only Asimov partner (for CLs)"),
        (f["onnx"], "the surrogate's log density as an ONNX graph (input `x` (n, D), output "
                    "`log_prob`)"),
        (f["partner_onnx"], "the partner's ONNX graph"),
        ("card.json", "parameters, bounds, training range, flow, provenance, validation, "
                      "limits"),
        (f["report"], "the validation report")) if name)
    return f"""# likeflow surrogate bundle

A normalizing-flow surrogate of a likelihood of {len(card['parameters'])} parameters
(POI `{poi}`), written by likeflow {card['likeflow_version']} on {card['created']}.

| file | what |
|---|---|
{rows}| `SHA256SUMS` | checksums of every file: `likeflow verify .` checks them |

Validation verdict: **{card['validation']['verdict']}**. {exact_line}
Limits at {lim['cl']:.0%} on `{poi}` (recomputed by `likeflow verify`): profile likelihood
{lim['profile'] if lim['profile'] is None else format(lim['profile'], '.4g')}{", " + cls if cls else ""}.

Trust the surrogate inside its training range only (`card.json`: each parameter's
`trained_on`); outside it, profiles and limits are marked untrusted.

## Use

### likeflow, without TensorFlow (`pip install likeflow`)

```python
import numpy as np
import likeflow
sur = likeflow.load("{f['surrogate']}", backend="numpy")
x = sur.sample(5, seed=1)
print(sur.names[:3], sur.log_prob(x))
print(likeflow.profile(sur, "{poi}", points=7, bayesian_samples=20_000).table())
```

### onnxruntime (`pip install onnxruntime`)

```python
import numpy as np
import onnxruntime as ort
import likeflow
x = likeflow.load("{f['surrogate']}", backend="numpy").sample(5, seed=1)
session = ort.InferenceSession("{f['onnx']}")
print(session.run(["log_prob"], {{"x": x.astype(np.float64)}})[0])
```
{spey}
### Check the bundle

```bash
likeflow verify .
```
"""


@dataclass
class VerifyResult:
    """What :func:`verify` found: ``problems`` (one line each; none means the bundle is
    intact and its limits reproduce) and the recomputed limits."""

    folder: str
    problems: list[str] = field(default_factory=list)
    limits: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(folder, *, limits: bool = True) -> VerifyResult:
    """Check a bundle: every file against ``SHA256SUMS`` (changed, missing and unlisted files
    named), ``card.json`` against its schema, and (``limits``) the card's limits recomputed
    from the files to :data:`REPRODUCE_RTOL`."""
    folder = os.fspath(folder)
    res = VerifyResult(folder)
    sums = os.path.join(folder, SUMS)
    if not os.path.isdir(folder):
        raise LikeflowError(f"{folder}: not a folder")
    if not os.path.isfile(sums):
        raise LikeflowError(f"{folder}: no {SUMS}; not a likeflow bundle")
    listed = {}
    with open(sums) as f:
        for k, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("  ", 1)
            if len(parts) != 2 or len(parts[0]) != 64:
                res.problems.append(f"{SUMS} line {k}: not '<sha256>  <file>'")
                continue
            listed[parts[1]] = parts[0]
    present = set(_files(folder))
    for name, digest in sorted(listed.items()):
        if name not in present:
            res.problems.append(f"{name}: missing")
        elif file_sha256(os.path.join(folder, name)) != digest:
            res.problems.append(f"{name}: changed (its SHA-256 is not the one in {SUMS})")
    for name in sorted(present - set(listed)):
        res.problems.append(f"{name}: not in {SUMS}")
    try:
        with open(os.path.join(folder, "card.json")) as f:
            card = json.load(f)
        _check_card(card, "card.json")
    except (OSError, ValueError, LikeflowError) as e:
        res.problems.append(str(e) if isinstance(e, LikeflowError) else
                            f"card.json: cannot be read ({e})")
        return res
    if limits and not res.problems:
        fl = card["files"]
        got = bundle_limits(os.path.join(folder, fl["surrogate"]),
                            os.path.join(folder, fl["partner"]) if fl["partner"] else None,
                            card["limits"]["poi"])
        res.limits = got
        for key, stated in card["limits"].items():
            if key in ("poi", "cl", "seed", "backend"):
                continue
            new = got.get(key)
            for a, b in zip(stated if isinstance(stated, list) else [stated],
                            new if isinstance(new, list) else [new]):
                if (a is None) != (b is None) or (a is not None and
                                                  abs(b - a) > REPRODUCE_RTOL * abs(a)):
                    res.problems.append(f"card.json: limit '{key}' is {stated}, the files give "
                                        f"{new}")
                    break
    return res
