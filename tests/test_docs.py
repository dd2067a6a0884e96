"""README.md and docs/: short README, commands that exist, runnable blocks that run, links that resolve.

Shell blocks are fenced ```sh (or ```bash). Each ``edgeaug`` command in them is checked against the CLI
(the subcommand and every option exist), each ``python -m MODULE`` / ``python scripts/X.py`` against that
program's ``--help``, each ``pip install ".[extras]"`` against pyproject's extras. A shell block right after
an ``<!-- runnable -->`` line is also run, as written, in an empty folder, with this tree's edgeaug.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"sh", "bash"}
LANGUAGES = SHELL | {"python", "toml", "text"}
RUNNABLE = "<!-- runnable -->"
MAX_README_LINES = 250


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    runnable: bool

    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> List[Block]:
    """The fenced blocks of a page (also those indented inside list items), dedented."""
    out, lines, i = [], page.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page.relative_to(REPO)}:{start + 1}: unclosed code fence")
        before = [ln.strip() for ln in lines[:start] if ln.strip()]
        runnable = bool(before) and before[-1] == RUNNABLE
        out.append(Block(page, start + 1, m.group(2), textwrap.dedent("\n".join(body)), runnable))
        i += 1
    return out


ALL_BLOCKS = [b for p in PAGES for b in blocks(p)]


def prose(page: Path) -> str:
    """The page without its fenced blocks (headings and links live here)."""
    return re.sub(r"^\s*```.*?^\s*```[ \t]*$", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)


# --- shell commands -----------------------------------------------------------------------------------


def commands(block: Block) -> List[List[str]]:
    """Simple commands of a shell block: continuation lines joined, split at ; | && & and parentheses."""
    text = re.sub(r"\\\n", " ", block.text)
    out: List[List[str]] = []
    for line in text.splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split, lex.commenters = True, "#"
        current: List[str] = []
        for tok in lex:
            if tok and set(tok) <= set("();<>|&"):
                out.append(current)
                current = []
            else:
                current.append(tok)
        out.append(current)
    return [c for c in out if c]


def strip_prefix(cmd: List[str]) -> List[str]:
    """Without ``sudo`` and ``VAR=value`` assignments."""
    while cmd and (cmd[0] == "sudo" or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", cmd[0])):
        cmd = cmd[1:]
    return cmd


def options(args: List[str]) -> List[str]:
    """The option names in ``args`` (``--out=x`` is ``--out``; ``[--json]`` is ``--json``)."""
    out = []
    for a in args:
        a = a.strip("[]")
        if re.match(r"^--?[A-Za-z]", a):
            out.append(a.split("=", 1)[0])
    return out


@functools.lru_cache(maxsize=None)
def edgeaug_cli():
    import typer.main

    from edgeaug.cli import app

    return typer.main.get_command(app)


def check_edgeaug(args: List[str]) -> Optional[str]:
    """None if ``edgeaug ARGS`` names an existing (sub)command and only its options; else the problem."""
    cmd, path, rest = edgeaug_cli(), ["edgeaug"], list(args)
    while hasattr(cmd, "commands"):  # a group (typer vendors click: no isinstance)
        if not rest or rest[0].startswith("-"):
            return None if not rest or rest[0] == "--help" else f"{' '.join(path)}: no subcommand"
        sub = cmd.commands.get(rest[0])
        if sub is None:
            return f"{' '.join(path)}: no command {rest[0]!r}"
        cmd, path, rest = sub, path + [rest[0]], rest[1:]
    known = {"--help"}
    for p in cmd.params:
        known.update(getattr(p, "opts", []))
        known.update(getattr(p, "secondary_opts", []))
    bad = [o for o in options(rest) if o not in known]
    return f"{' '.join(path)}: unknown option(s) {bad}" if bad else None


@functools.lru_cache(maxsize=None)
def program_help(*argv: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, *argv, "--help"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(argv)} --help failed:\n{proc.stderr}"
    return proc.stdout


def check_help(argv: List[str], args: List[str]) -> Optional[str]:
    """Options against ``--help``; a first positional against the ``{a,b,...}`` choices of the usage line."""
    text = program_help(*argv)
    known = set(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", text))
    bad = [o for o in options(args) if o not in known]
    if bad:
        return f"{' '.join(argv)}: unknown option(s) {bad}"
    usage = re.sub(r"\[[^\[\]]*\]", "", text.split("\n\n", 1)[0])  # optional items hold options' choices
    choices = re.search(r"\{([\w,-]+)\}", usage)
    positionals = [a for a in args if not a.startswith("-")]
    if choices and positionals and positionals[0] not in choices.group(1).split(","):
        return f"{' '.join(argv)}: no command {positionals[0]!r} (choices {choices.group(1)})"
    return None


@functools.lru_cache(maxsize=None)
def extras() -> Set[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return set(data["project"].get("optional-dependencies", {}))


MODULE_ALIASES = {"edgeaug_loader.py": "edgeaug.loader"}  # the bundle has the loader's command line


def check(cmd: List[str]) -> Optional[str]:
    """The problem with one command of the docs, None when it checks out; 'skip' for commands not ours."""
    cmd = strip_prefix(cmd)
    if not cmd:
        return "skip"
    prog, args = cmd[0], cmd[1:]
    if prog == "edgeaug":
        return check_edgeaug(args)
    if prog.startswith("./scripts/"):
        f = REPO / prog[2:]
        return None if f.is_file() and f.stat().st_mode & stat.S_IXUSR else f"{prog}: no such executable"
    if prog in ("python", "python3"):
        if args[:1] == ["-m"] and args[1].startswith("edgeaug"):
            return check_help(["-m", args[1]], args[2:])
        if args and args[0].startswith("scripts/"):
            if not (REPO / args[0]).is_file():
                return f"{args[0]}: no such script"
            return check_help([args[0]], args[1:])
        if args and args[0] in MODULE_ALIASES:
            return check_help(["-m", MODULE_ALIASES[args[0]]], args[1:])
        return "skip"
    if prog == "pip" and args[:1] == ["install"]:
        for spec in args[1:]:
            m = re.match(r"^\.\[([\w,-]+)\]$", spec)
            missing = set(m.group(1).split(",")) - extras() if m else set()
            if missing:
                return f"pip install {spec}: no extra(s) {sorted(missing)} in pyproject.toml"
        return None
    return "skip"


def test_every_code_block_names_its_language():
    """So that no shell block escapes the checks below (and readers get highlighting)."""
    bad = [f"{b.where()}: ```{b.lang}" for b in ALL_BLOCKS if b.lang not in LANGUAGES]
    assert not bad, f"code blocks need one of {sorted(LANGUAGES)}: {bad}"


def test_every_documented_command_exists_with_its_options():
    checked, problems = 0, []
    for b in ALL_BLOCKS:
        if b.lang not in SHELL:
            continue
        for cmd in commands(b):
            problem = check(cmd)
            if problem == "skip":
                continue
            checked += 1
            if problem:
                problems.append(f"{b.where()}: {shlex.join(cmd)}\n    {problem}")
    assert not problems, "\n".join(problems)
    assert checked >= 40, f"only {checked} commands found: is the extraction broken?"


def test_the_checks_catch_a_wrong_command():
    """The checker itself: unknown commands and options, missing scripts and extras are reported."""
    assert check(["edgeaug", "build", "x", "-o", "y.lmdb", "--target", "rpi4"]) is None
    assert check(["edgeaug", "target", "from-onnx", "m.onnx", "--size", "224x224"]) is None
    assert "unknown option" in check(["edgeaug", "build", "x", "--no-such-option"])
    assert "no command" in check(["edgeaug", "biuld", "x"])
    assert "no command" in check(["edgeaug", "target", "from-pytorch", "m.pt"])
    assert "no command" in check(["python", "-m", "edgeaug.loader", "inspect", "p.lmdb"])
    assert "unknown option" in check(["python", "-m", "edgeaug.loader", "bench", "p.lmdb", "--fast"])
    assert "no such script" in check(["python", "scripts/no_such_bench.py"])
    assert "no extra" in check(["pip", "install", "-e", ".[build,tensorflow]"])
    assert "no such executable" in check(["./scripts/no-such-thing"])
    assert commands(Block(REPO, 1, "sh", "FOO=1 edgeaug a \\\n  --b && edgeaug c | tee x # edgeaug d", False)) == [
        ["FOO=1", "edgeaug", "a", "--b"],
        ["edgeaug", "c"],
        ["tee", "x"],
    ]


def test_every_python_and_toml_block_parses():
    for b in ALL_BLOCKS:
        if b.lang == "python":
            compile(b.text, b.where(), "exec")
        elif b.lang == "toml":
            try:
                tomllib.loads(b.text)
            except tomllib.TOMLDecodeError as e:
                raise AssertionError(f"{b.where()}: {e}") from None


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.runnable], ids=lambda b: b.where())
def test_runnable_blocks_run_as_written_in_an_empty_folder(block, tmp_path):
    assert block.lang in SHELL, f"{block.where()}: only shell blocks can be runnable"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shims = {"edgeaug": f'exec "{sys.executable}" -m edgeaug.cli "$@"', "python": f'exec "{sys.executable}" "$@"'}
    shims["python3"] = shims["python"]
    for name, line in shims.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{line}\n")
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-x", "-c", block.text], cwd=work, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{block.where()} failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


def test_the_readme_runs_its_walkthrough():
    assert any(b.page.name == "README.md" and b.runnable for b in ALL_BLOCKS)


# --- links ----------------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> Set[str]:
    seen: Dict[str, int] = {}
    out = set()
    for line in prose(page).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_slugs_follow_github():
    assert slug("Raspberry Pi (64-bit and 32-bit)") == "raspberry-pi-64-bit-and-32-bit"
    assert slug("The hybrid: online flip and shift") == "the-hybrid-online-flip-and-shift"
    assert slug("How many variants does offline augmentation need?") == (
        "how-many-variants-does-offline-augmentation-need"
    )
    assert slug("The `onnx` recipe op") == "the-onnx-recipe-op"


def links(page: Path) -> List[str]:
    text = re.sub(r"`[^`\n]*`", "", prose(page))  # inline code is not a link
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text)


def test_every_relative_link_points_to_an_existing_file_and_anchor():
    problems, count = [], 0
    for page in PAGES:
        for target in links(page):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            count += 1
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            name = f"{page.relative_to(REPO)}: ({target})"
            if not dest.exists():
                problems.append(f"{name}: no file {dest}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{name}: no heading with anchor #{anchor} in {dest.name}")
    assert not problems, "\n".join(problems)
    assert count >= 20, f"only {count} relative links found: is the extraction broken?"


# --- the README and the benchmarks page -----------------------------------------------------------


def test_the_readme_is_short_and_keeps_the_quick_start():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_README_LINES
    quick = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    shell = [b for b in blocks(REPO / "README.md") if b.lang in SHELL and b.text.strip() in quick]
    assert shell, "Quick start has no shell block"
    cmds = [c[0] for b in shell for c in commands(b)]
    assert "./scripts/demo" in cmds and "./scripts/test" in cmds
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "./scripts/test" in ci, "CI no longer runs the README's test command"


def test_every_benchmark_section_is_stamped():
    """docs/benchmarks.md: each section says when, on what code and machine, and with which command."""
    text = prose(REPO / "docs" / "benchmarks.md")
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert len(sections) >= 8
    for section in sections:
        title = section.splitlines()[0]
        stamps = re.findall(r"^\| stamp \| \|\n\|---\|---\|\n((?:\|.*\|\n)+)", section, re.M)
        assert stamps, f"benchmarks.md: section {title!r} has no stamp table"
        for rows in stamps:
            fields = dict(re.findall(r"^\| (\w+) \| (.+?) \|$", rows, re.M))
            for key in ("date", "commit", "machine", "command"):
                assert fields.get(key, "").strip(), f"benchmarks.md: {title!r}: the stamp has no {key}"
