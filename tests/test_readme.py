"""Every code block of the README runs: the Python blocks, each on its own, in order, in a
temporary directory; the ``emkit`` command lines through the CLI's ``main`` (slow)."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import shlex

import numpy as np
import pytest

from emkit.cli import main
from emkit.io import load_faithful

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[tuple[int, str]]:
    """(first line number, code) of every fenced block in ``language``."""
    if not README.exists():
        return []
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(2))
        for m in _FENCE.finditer(text)
        if m.group(1) == language
    ]


PYTHON = _blocks("python")
BASH = _blocks("bash")


def test_readme_has_code_blocks() -> None:
    if not README.exists():
        pytest.skip("needs the source tree")
    assert len(PYTHON) >= 5 and len(BASH) >= 2


@pytest.mark.parametrize(("line", "code"), PYTHON, ids=[f"line{n}" for n, _ in PYTHON])
def test_python_block_runs_on_its_own(
    line: int, code: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fresh namespace each: every block has its own imports, as a reader copies it
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, f"README.md:{line}", "exec"), namespace)


def _emkit_commands() -> list[list[str]]:
    """The ``emkit`` command lines of the bash blocks (after ``&&``, comments dropped),
    in order; pip and pytest lines install or test, so they are not run here."""
    commands = []
    for _, code in BASH:
        for line in code.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0] == "emkit":
                    commands.append(words[1:])
    return commands


def test_the_bash_blocks_name_emkit_commands() -> None:
    if not README.exists():
        pytest.skip("needs the source tree")
    assert {words[0] for words in _emkit_commands()} >= {"demo", "fit", "predict", "sample"}


@pytest.mark.slow
def test_emkit_command_lines_run(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ``emkit ...`` line, in order, in a folder holding the ``data.csv`` the README
    uses (Old Faithful); later lines read what earlier ones wrote."""
    monkeypatch.chdir(tmp_path)
    X, names = load_faithful()
    np.savetxt("data.csv", X, delimiter=",", header=",".join(names), comments="")
    for words in _emkit_commands():
        if words[0] == "demo":
            words = [*words, "--no-plot", "--out", "demo-out"]  # keep emkit-out for `fit`
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(words)
        assert status == 0, f"emkit {shlex.join(words)}: {err.getvalue()}"
    assert pathlib.Path("samples.csv").exists() and pathlib.Path("emkit-out/model.npz").exists()
