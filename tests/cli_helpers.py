"""Helpers of the command-line tests: run a command through click's CliRunner, and assert a
refusal (exit 2, one line naming what is wrong, no traceback)."""

from __future__ import annotations

from click.testing import CliRunner

from likeflow.cli import cli


def run(*args):
    """``likeflow ARGS`` in this process (stdout and stderr kept apart)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def refused(result, *fragments):
    """Exit 2, one line on stderr holding every fragment, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1, result.stderr
    for frag in fragments:
        assert frag in err[0], err[0]
