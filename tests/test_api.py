"""The Python API is the product: arrays in, bounds by name, one seed, the CLI a thin layer.

Also the house rules the API rests on: the import graph (nothing imports the fitting
orchestration, no cycles), the CLI importing only the public API, no command over 30 lines.
"""

import ast
import inspect
import pathlib
import re

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import likeflow  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from likeflow.cli import cli  # noqa: E402

PACKAGE = pathlib.Path(likeflow.__file__).parent
TINY = {"layers": 2, "hidden": (8,)}


def test_fit_takes_an_array_with_bounds_by_name_and_weights():
    rng = np.random.default_rng(0)
    x = np.column_stack([np.abs(rng.normal(size=3000)), rng.normal(size=3000)])
    sur = likeflow.fit(x, bounds={"x0": (0, None)}, weights=np.ones(3000), seed=1,
                       flow_config=TINY, train_config=likeflow.TrainConfig(epochs=2))
    assert sur.names == ["x0", "x1"] and sur.bounds[0].tolist() == [0.0, np.inf]
    assert sur.log_prob([[-0.1, 0.0]])[0] == -np.inf   # outside the bound
    assert np.isfinite(sur.log_prob([[0.5, 0.0]])[0])
    assert sur.validation_result.verdict()[0] in ("PASS", "WARN", "FAIL")
    assert sur.training["seed"] == 1 and "seed" not in sur.training["config"]
    assert "seed" not in sur.training["data"]["split"]
    # the batch the rule chose for 2400 training rows is written into the file
    assert sur.training["config"]["batch_size"] == 128
    assert sur.training["devices"]["global_batch"] == 128


@pytest.mark.parametrize("bad, match", [
    ({"nope": (0, 1)}, "unknown parameters"),
    ({"x0": (1, 0)}, "not an interval"),
    ({"x0": "wide"}, "give \\(lo, hi\\)"),
    ([[0, 1]], "1 pairs for 2 parameters"),
])
def test_bad_bounds_are_likeflow_errors(bad, match):
    with pytest.raises(likeflow.LikeflowError, match=match):
        likeflow.as_sample_set(np.zeros((10, 2)) + np.arange(10)[:, None], bounds=bad)


@pytest.mark.parametrize("data, match", [
    ("not an array", "no such file|not a"), (np.zeros((2, 3, 4)), "\\(N, D\\) array"),
    ([["a", "b"]], "array of numbers"),
])
def test_bad_sample_inputs_are_likeflow_errors(data, match):
    with pytest.raises(likeflow.LikeflowError, match=match):
        likeflow.as_sample_set(data)


def test_a_seed_in_two_places_is_refused():
    with pytest.raises(likeflow.LikeflowError, match="one seed"):
        likeflow.fit(np.random.default_rng(0).normal(size=(500, 2)), flow_config={"seed": 3})
    with pytest.raises(TypeError):
        likeflow.TrainConfig(seed=3)  # the seed is the fit's, not a training hyperparameter


@pytest.mark.slow
def test_the_same_seed_through_cli_and_api_gives_bitwise_identical_weights(tmp_path):
    x = np.random.default_rng(2).normal(size=(2000, 3))
    path = tmp_path / "s.h5"
    likeflow.write_samples(path, likeflow.SampleSet(x, names=["a", "b", "c"]))
    r = CliRunner().invoke(cli, ["fit", str(path), "-o", str(tmp_path / "cli.h5"), "--seed", "7",
                                 "--epochs", "2", "--layers", "2", "--hidden", "8", "-q",
                                 "--no-validate"])
    assert r.exit_code == 0, r.output
    api = likeflow.fit(str(path), out=tmp_path / "api.h5", seed=7, validate=False,
                       flow_config=TINY, train_config=likeflow.TrainConfig(epochs=2))
    from_cli = likeflow.load(tmp_path / "cli.h5")
    for a, b in zip(from_cli.flow.stored_variables, api.flow.stored_variables):
        assert np.array_equal(a.numpy(), b.numpy())
    assert from_cli.training["data"]["fingerprint"] == api.training["data"]["fingerprint"]
    # another seed: another surrogate
    other = likeflow.fit(str(path), seed=8, validate=False, flow_config=TINY,
                         train_config=likeflow.TrainConfig(epochs=2))
    assert not np.array_equal(other.flow.trainable_variables[0].numpy(),
                              api.flow.trainable_variables[0].numpy())


@pytest.mark.slow
def test_whiten_auto_on_off_through_the_cli_and_a_config_file(tmp_path):
    """auto whitens where the rows pin the correlation down (2000 rows in 3 dimensions: yes),
    on/off force it, a --config file says the same words; the file holds the data's matrix."""
    x = np.random.default_rng(2).normal(size=(2000, 3)) @ np.array(
        [[1.0, 0.0, 0.0], [0.7, 0.7, 0.0], [0.0, 0.5, 0.9]]).T
    path = tmp_path / "s.h5"
    likeflow.write_samples(path, likeflow.SampleSet(x))
    conf = tmp_path / "c.json"
    conf.write_text('{"whiten": "off"}')
    for k, (args, want) in enumerate(((["--whiten", "auto"], True), (["--whiten", "off"], False),
                                      (["--whiten", "on"], True),
                                      (["--config", str(conf)], False))):
        out = tmp_path / f"w{k}.h5"
        r = CliRunner().invoke(cli, ["fit", str(path), "-o", str(out), "--epochs", "1",
                                     "--layers", "2", "--hidden", "8", "-q", "--no-validate",
                                     *args])
        assert r.exit_code == 0, r.output
        sur = likeflow.load(out, backend="numpy")
        assert sur.config.whiten is want, args
    sur_on = likeflow.load(tmp_path / "w0.h5", backend="numpy")
    lower = dict(zip(sur_on.flow.names, sur_on.flow.weights))
    matrix = next(w for name, w in lower.items() if name.startswith("whiten"))
    assert matrix[1, 0] > 0.5 and np.allclose(np.triu(matrix, 1), 0)


def test_a_whiten_word_not_known_is_refused(tmp_path):
    path = tmp_path / "s.h5"
    likeflow.write_samples(path, likeflow.SampleSet(np.zeros((10, 2))))
    r = CliRunner().invoke(cli, ["fit", str(path), "--whiten", "maybe"])
    assert r.exit_code == 2 and "maybe" in r.output


def test_sample_without_a_seed_is_fresh_and_with_one_reproducible(tmp_path):
    sur = likeflow.fit(np.random.default_rng(3).normal(size=(1000, 2)), validate=False,
                       flow_config=TINY, train_config=likeflow.TrainConfig(epochs=1))
    assert not np.array_equal(sur.sample(5), sur.sample(5))
    assert np.array_equal(sur.sample(5, seed=4), sur.sample(5, seed=4))


def test_validate_takes_paths_and_reads_as_the_fit_did(tmp_path):
    x = np.column_stack([np.abs(np.random.default_rng(4).normal(size=3000)),
                         np.random.default_rng(5).normal(size=3000)])
    s = likeflow.SampleSet(x, names=["mu", "theta"], poi=["mu"],
                           bounds=likeflow.as_bounds({"mu": (0, 5)}, ["mu", "theta"]))
    likeflow.write_samples(tmp_path / "s.h5", s)
    likeflow.fit(str(tmp_path / "s.h5"), out=tmp_path / "s.likeflow.h5", flow_config=TINY,
                 train_config=likeflow.TrainConfig(epochs=2), validate=False)
    v = likeflow.validate(str(tmp_path / "s.likeflow.h5"), str(tmp_path / "s.h5"))
    # the test rows of the training file, nothing else (the file has no log_prob: the residual
    # check says it could not run)
    assert v.n >= 20 and [n for n in v.notes if "could not run" not in n] == []
    assert any("residual check" in n for n in v.notes)


# --- the house the API lives in ----------------------------------------------------------------

def _imports(path: pathlib.Path) -> set[str]:
    """Package modules a module imports (anywhere in it, lazily too), as dotted names."""
    here = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = here[:-1] if path.name != "__init__.py" else here
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ((node.module,) if node.module else ()))
            else:
                mod = node.module or ""
            if mod.startswith("likeflow"):
                names = [f"{mod}.{a.name}" for a in node.names]
                out |= {n for n in names if _module_path(n)} or {mod}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("likeflow")}
    return out


def _module_path(name: str) -> pathlib.Path | None:
    p = PACKAGE.parent.joinpath(*name.split("."))
    for cand in (p.with_suffix(".py"), p / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        graph[name] = {m.removesuffix(".__init__") for m in _imports(path)} - {name}
    return graph


def test_nothing_but_the_package_face_imports_the_fitting_orchestration():
    importers = sorted(m for m, deps in _graph().items() if "likeflow.fitting.run" in deps)
    assert importers == [], importers


def test_the_import_graph_has_no_cycle():
    graph = {m: d for m, d in _graph().items() if m not in ("likeflow", "likeflow.cli")}
    state: dict[str, int] = {}

    def visit(m, trail):
        if state.get(m) == 1:
            pytest.fail("import cycle: " + " -> ".join(trail[trail.index(m):] + [m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            visit(d, trail + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])


def test_the_cli_imports_only_the_public_api_and_errors():
    assert _imports(PACKAGE / "cli.py") == {"likeflow", "likeflow.errors"}


def test_every_command_is_a_thin_wrapper():
    import likeflow.cli as cli_mod
    for name, cmd in cli.commands.items():
        fn = inspect.unwrap(cmd.callback)
        fn = getattr(fn, "__wrapped__", fn)
        lines = inspect.getsource(fn).splitlines()
        body = [ln for ln in lines[_body_start(lines):] if ln.strip()]
        assert len(body) <= 30, f"'{name}' has {len(body)} lines"
    assert cli_mod.likeflow is likeflow


def _body_start(lines: list[str]) -> int:
    """The first line after the def and its docstring."""
    i = next(k for k, ln in enumerate(lines) if ln.lstrip().startswith("def "))
    while not lines[i].rstrip().endswith(":"):
        i += 1
    i += 1
    if lines[i].strip().startswith('"""'):
        if lines[i].strip().count('"""') >= 2 and len(lines[i].strip()) > 3:
            return i + 1
        i += 1
        while '"""' not in lines[i]:
            i += 1
    return i + 1


def test_import_likeflow_is_quiet_and_does_not_import_tensorflow():
    import subprocess
    import sys
    code = ("import sys, likeflow, likeflow.cli; assert 'tensorflow' not in sys.modules; "
            # the CLI reads its defaults from the API: that must not pull in scipy.stats
            "assert 'scipy.stats' not in sys.modules, 'slow start-up'; "
            "likeflow.load; import likeflow.tfsetup as t; t.import_tf(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**__import__("os").environ, "LIKEFLOW_TF_LOGS": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert out.stderr.strip() == "", out.stderr  # no TensorFlow start-up lines


def test_the_readme_python_section_runs(tmp_path, monkeypatch):
    text = (PACKAGE.parent / "README.md").read_text()
    section = text.split("## Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log(monkeypatch, tmp_path):
    import io
    import json
    rec = {"epoch": 0, "epochs": 3, "train_loss": 1.0, "val_loss": 1.1, "best_epoch": 0,
           "lr": 1e-3, "time": 10.0, "elapsed": 10.0}
    monkeypatch.setenv("LIKEFLOW_PROGRESS", "lines")
    out = io.StringIO()
    with likeflow.EpochProgress(stream=out, max_time=15, log=tmp_path / "log.jsonl") as p:
        p(rec)
    assert out.getvalue().startswith("epoch    1/3") and "<= 5s left" in out.getvalue()
    assert json.loads((tmp_path / "log.jsonl").read_text())["val_loss"] == 1.1
    monkeypatch.setenv("LIKEFLOW_PROGRESS", "bar")
    out = io.StringIO()
    with likeflow.EpochProgress(stream=out) as p:
        p(rec)
    assert "1/3" in out.getvalue() and "val 1.1000*" in out.getvalue()
    assert "\n" not in out.getvalue().rstrip("\n").split("\r")[-1]  # redrawn, not one per line


def test_a_long_epoch_reports_its_steps_and_they_are_not_logged(monkeypatch, tmp_path):
    """Within an epoch longer than PARTIAL_EVERY (a streamed file), partial records say the
    steps done and the time left in the epoch; the JSON log keeps whole epochs only."""
    import io
    import json

    from likeflow.fitting import loop as training
    monkeypatch.setattr(training, "PARTIAL_EVERY", 0.0)
    monkeypatch.setenv("LIKEFLOW_PROGRESS", "lines")
    x = np.random.default_rng(0).normal(size=(12_000, 2))
    out = io.StringIO()
    with likeflow.EpochProgress(stream=out, log=tmp_path / "log.jsonl") as p:
        likeflow.fit(x, validate=False, progress=p, flow_config=dict(layers=1, hidden=(8,)),
                     train_config=likeflow.TrainConfig(epochs=1, batch_size=64))
    lines = out.getvalue().splitlines()
    steps = [ln for ln in lines if "left in the epoch" in ln]
    assert steps and steps[0].startswith("epoch    1/1  step 16/150")
    assert [json.loads(ln)["epoch"] for ln in (tmp_path / "log.jsonl").read_text().splitlines()] \
        == [0]

