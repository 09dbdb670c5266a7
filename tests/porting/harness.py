"""Run TaskFlow's own examples (from the installed ``taskflow`` package) and their renamed ports.

Nothing of TaskFlow is copied into this repository: :func:`examples_dir` finds the examples
inside the installed package at run time and :func:`port` writes renamed copies into a
temporary directory, applying the porting guide's rename (docs/porting-from-taskflow.md,
section 1: the word ``taskflow`` becomes ``celeryflow``).

Outputs are compared "in substance": :func:`normalise` masks ids, timings, addresses and
paths, and :func:`same_substance` ignores the order of lines (parallel work prints in any
order) when the exact order differs.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

WORD = re.compile(r"\btaskflow\b")
REPO_ROOT = Path(__file__).resolve().parents[2]


def examples_dir() -> Path | None:
    """The ``examples`` directory of the installed taskflow package (None if not installed)."""
    try:
        import taskflow
    except ImportError:
        return None
    path = Path(taskflow.__file__).parent / "examples"
    return path if path.is_dir() else None


def rename(text: str) -> str:
    """The porting guide's rename."""
    return WORD.sub("celeryflow", text)


def port(src: Path, dest: Path) -> None:
    """Copy the example tree ``src`` to ``dest``, renamed (``.py`` files only are rewritten)."""
    for path in src.rglob("*"):
        if "__pycache__" in path.parts:
            continue
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".py":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rename(path.read_text()))


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_script(script: Path, home: Path, env_extra: dict[str, str] | None = None, timeout: float = 120,
               seed: int | None = None) -> Outcome:
    """Run ``script`` in a subprocess with a private HOME and (celeryflow) logbook.

    ``seed``: the interpreter seeds :mod:`random` with it at start-up (a ``sitecustomize``
    in ``home``), for examples that print what ``random`` chose.
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERYFLOW_")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "xdg"), TMPDIR=str(home), PYTHONUNBUFFERED="1",
               CELERYFLOW_BACKEND=f"sqlite:///{home / 'logbook.db'}")
    # this checkout's celeryflow, whatever the interpreter has installed
    path = [str(REPO_ROOT), os.environ.get("PYTHONPATH")]
    if seed is not None:
        site = home / "seeded"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(f"import random\nrandom.seed({seed})\n")
        path.insert(0, str(site))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, path))
    env.update(env_extra or {})
    started = time.monotonic()
    try:
        result = subprocess.run([sys.executable, str(script)], cwd=home, env=env, capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Outcome(-9, out, f"timed out after {timeout} s", time.monotonic() - started)
    return Outcome(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


_MASKS = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"0x[0-9a-f]+"), "<addr>"),
    (re.compile(r"\d+\.\d+(e-?\d+)?"), "<num>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?"), "<time>"),
    (re.compile(r"/tmp/\S+|/\S*/(?:site-packages|wt-[\w-]+|main)/\S+"), "<path>"),
]


#: an engine's repr (TaskFlow's ``...action_engine.engine.ParallelActionEngine``, celeryflow's
#: ``...engines.engine.CeleryEngine``): listeners print it; the class is an implementation detail
_ENGINE = re.compile(r"<celeryflow\.engines\.[\w.]+ object at <addr>>")
#: where a listener's message starts or ends inside a line: TaskFlow's threads write a print's
#: text and its newline separately, so parallel work can glue two messages on one line (a
#: message starts with the engine's repr or a capitalised word: "...vol-0Making volume vol-2")
_GLUED_START = re.compile(r"(?<=\S)(?=<engine>)|(?<=[a-z0-9])(?=[A-Z][a-z]+ )")
_GLUED_END = re.compile(r"(from state '[A-Z_]+'|\(failure=(?:True|False)\))(?=\S)")

_DICT = re.compile(r"\{[^{}]*\}")


def _sorted_dicts(line: str) -> str:
    """Dict literals with their keys sorted (parallel work fills results in any order)."""

    def one(match: re.Match[str]) -> str:
        try:
            value = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            return match.group(0)
        return repr(dict(sorted(value.items(), key=repr))) if isinstance(value, dict) else match.group(0)

    return _DICT.sub(one, line)


def _lines(text: str) -> list[str]:
    lines = []
    for line in rename(text).splitlines():
        line = _sorted_dicts(line.rstrip())
        for pattern, mask in _MASKS:
            line = pattern.sub(mask, line)
        line = _GLUED_END.sub("\\1\n", _GLUED_START.sub("\n", _ENGINE.sub("<engine>", line)))
        lines.extend(line.split("\n"))
    return lines


def _tracebacks(lines: Iterable[str]) -> Iterator[str]:
    """Tracebacks as their header and exception line.

    The frames between are the engine's own (TaskFlow's action engine there, celeryflow's
    engine and worker here); celeryflow's ``Remote traceback:`` section (the worker's side
    of the same exception) is left out with them.
    """
    in_frames = remote = False
    for line in lines:
        if line == "Remote traceback:":
            remote = True
            continue
        if line == "Traceback (most recent call last):":
            in_frames = True
            if not remote:
                yield line
            continue
        if in_frames and line.startswith(" "):  # a frame, its source line or its carets
            continue
        if in_frames:
            in_frames = False
            if remote:  # the worker's exception line repeats the caller's
                remote = False
                continue
        yield line


def normalise(text: str) -> list[str]:
    """Lines with ids, numbers with a fraction, addresses, paths and engine classes masked.

    TaskFlow's own names are renamed; listener messages glued together by parallel prints
    are split apart; tracebacks keep their header and exception line (:func:`_tracebacks`).

    Consecutive WAITING/ANALYZING rounds of ``run_iter()`` count as one: how many completions
    one wait collects depends on timing, in TaskFlow as here.
    """
    out: list[str] = []
    for line in _tracebacks(line for line in _lines(text) if line):
        if line == "ANALYZING" and out[-2:] == ["ANALYZING", "WAITING"]:
            out.pop()
            continue
        out.append(line)
    return out


def same_substance(expected: str, actual: str) -> bool:
    """The same lines, in order or (parallel work) in some other order."""
    a, b = normalise(expected), normalise(actual)
    return a == b or sorted(a) == sorted(b)
