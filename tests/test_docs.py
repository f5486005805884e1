"""Docs cannot rot: every ``ocrkit ...`` line in a code block of README.md and
docs/*.md names a subcommand and options that exist (parsed with click's own
parser, never run), every ``python bench/NAME.py ...`` line names a bench script
and options it defines, and every relative Markdown link points at a file that
exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMAND_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK_DOCS = [*COMMAND_DOCS, ROOT / "plugins" / "README.md"]

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.M | re.S)
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
SEPARATORS = {"&&", "||", "|", ";", "&"}
REDIRECTIONS = {">", ">>", "<", ">&", "&>", "2>", "<<", "<<<"}
WRAPPERS = {"time", "nohup", "env", "sudo", "exec"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def shell_blocks(text: str) -> list[str]:
    """The bodies of fenced code blocks that hold shell commands."""
    return [body for lang, body in FENCE.findall(text) if lang.lower() in SHELL_LANGUAGES]


def logical_lines(block: str) -> list[str]:
    """Lines with backslash continuations joined (as the shell joins them)."""
    return [line for line in re.sub(r"\\\n", "", block).splitlines() if line.strip()]


def segments(line: str) -> list[list[str]]:
    """Simple commands of a line: split on ``&&``, ``|``, ``;``; comments, a ``$``
    prompt, environment assignments and redirections dropped."""
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out, current, skip_next = [], [], False
    for token in lexer:
        if skip_next:
            skip_next = False
            continue
        if token in SEPARATORS:
            out.append(current)
            current = []
        elif token in REDIRECTIONS or (token and set(token) <= set("<>&")):
            if current and current[-1].isdigit():  # 2> file
                current.pop()
            skip_next = True
        elif token in {"(", ")"}:
            continue
        else:
            current.append(token)
    out.append(current)
    return [seg for seg in out if seg]


def ocrkit_args(words: list[str]) -> list[str] | None:
    """The arguments after ``ocrkit`` (also ``python -m ocrkit`` and ``torchrun
    ... -m ocrkit``), or None when the command is not ocrkit."""
    while words and (ENV_ASSIGNMENT.match(words[0]) or words[0] in WRAPPERS):
        words = words[1:]
    if not words:
        return None
    if words[0] == "ocrkit":
        return words[1:]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "ocrkit":
            return words[i + 2:]
    return None


def check_command(args: list[str]) -> list[str]:
    """Problems with one ``ocrkit`` command line: an unknown subcommand, an option
    the subcommand does not have, a missing option value or a value outside a
    choice. Parses with click's parser; runs nothing."""
    from ocrkit.cli import cli

    root = click.Context(cli, info_name="ocrkit", **cli.context_settings)
    problems = []
    try:
        opts, rest, _ = cli.make_parser(root).parse_args(list(args))
    except click.UsageError as exc:
        return [f"ocrkit: {exc.format_message()}"]
    if opts.get("help") or opts.get("version"):
        return problems
    if not rest:
        return ["no subcommand"]
    name, sub_args = rest[0], rest[1:]
    command = cli.get_command(root, name)
    if command is None:
        return [f"no subcommand {name!r}"]
    ctx = click.Context(command, info_name=name, parent=root)
    try:
        values, _, order = command.make_parser(ctx).parse_args(list(sub_args))
    except click.UsageError as exc:
        return [f"ocrkit {name}: {exc.format_message()}"]
    for param in {p.name: p for p in order}.values():
        if not isinstance(param.type, click.Choice):
            continue
        given = values.get(param.name)
        for value in given if isinstance(given, (list, tuple)) else [given]:
            # only what the line gave: parsed tokens are strings (flags give bools,
            # a choice argument left out gives click's own "unset" value)
            if isinstance(value, str) and value not in map(str, param.type.choices):
                problems.append(f"ocrkit {name}: {param.opts[-1]} {value!r} is not one of "
                                f"{list(param.type.choices)}")
    return problems


def command_lines(text: str) -> list[tuple[str, list[str]]]:
    """(the line, its arguments after ``ocrkit``) for every ocrkit command in the
    shell code blocks of a Markdown text."""
    found = []
    for block in shell_blocks(text):
        for line in logical_lines(block):
            for words in segments(line):
                args = ocrkit_args(words)
                if args is not None:
                    found.append((line.strip(), args))
    return found


def check_text(text: str) -> tuple[int, list[str]]:
    """(how many ocrkit commands were checked, the problems found)."""
    found = command_lines(text)
    return len(found), [f"{problem}\n    in: {line}" for line, args in found
                        for problem in check_command(args)]


BENCH_SCRIPT = re.compile(r"^bench/(\w+)\.py$")
ADD_ARGUMENT = re.compile(r"add_argument\(((?:\s*\"-[^\"]*\",)+)")


def bench_options(script: Path) -> set[str]:
    """The options a bench script's argparse parsers define (read from its source,
    never run: several import torch): every string option of an ``add_argument``
    call, ``--no-X`` beside a BooleanOptionalAction's ``--X``, and what
    bench/stages.py's ``speed_options`` adds where the script calls it."""
    sources = [script.read_text(encoding="utf-8")]
    if "speed_options(" in sources[0]:
        sources.append((script.parent / "stages.py").read_text(encoding="utf-8"))
    options = {"-h", "--help"}
    for text in sources:
        for match in re.finditer(r"add_argument\(([^)]*)", text):
            call = match.group(1)
            names = re.findall(r"\"(-[-\w]+)\"", call.split("help=")[0])
            options.update(names)
            if "BooleanOptionalAction" in call:
                options.update("--no-" + n[2:] for n in names if n.startswith("--"))
    return options


def bench_problems(text: str) -> tuple[int, list[str]]:
    """(how many bench command lines were checked, their unknown scripts and
    options) over the shell code blocks of a Markdown text."""
    checked, problems = 0, []
    for block in shell_blocks(text):
        for line in logical_lines(block):
            for words in segments(line):
                while words and (ENV_ASSIGNMENT.match(words[0]) or words[0] in WRAPPERS):
                    words = words[1:]
                if len(words) < 2 or not words[0].startswith("python") \
                        or not BENCH_SCRIPT.match(words[1]):
                    continue
                checked += 1
                script = ROOT / words[1]
                if not script.is_file():
                    problems.append(f"no {words[1]}\n    in: {line.strip()}")
                    continue
                known = bench_options(script)
                for word in words[2:]:
                    option = word.split("=", 1)[0]
                    if option.startswith("-") and not re.fullmatch(r"-\d.*", option) \
                            and option not in known:
                        problems.append(f"{words[1]}: no option {option}\n    in: "
                                        f"{line.strip()}")
    return checked, problems


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub gives a Markdown file: lower case, punctuation
    other than ``-`` and ``_`` dropped, spaces made hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", FENCE.sub("", path.read_text(
            encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    """Relative links of a Markdown file (outside code) whose target file, or whose
    heading anchor in a Markdown target, does not exist."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    text = INLINE_CODE.sub("", text)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^(https?:|mailto:)", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = path.parent / file_part if file_part else path
        if not linked.exists():
            broken.append(f"{path.relative_to(ROOT)}: {target}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    return broken


@pytest.mark.parametrize("checker, what, at_least", [(check_text, "ocrkit", 30),
                                                     (bench_problems, "bench", 20)])
def test_every_command_line_in_the_docs_names_existing_options(checker, what, at_least):
    """ocrkit lines: subcommands, options and choices; bench lines: scripts and options."""
    checked, problems = 0, []
    for doc in COMMAND_DOCS:
        n, found = checker(doc.read_text(encoding="utf-8"))
        checked += n
        problems += [f"{doc.relative_to(ROOT)}: {p}" for p in found]
    assert not problems, "\n".join(problems)
    assert checked > at_least, f"only {checked} {what} command lines: is the extraction broken?"


def test_the_bench_checker_catches_a_renamed_option_and_a_missing_script():
    text = ("```bash\n"
            "python bench/paper_tables.py --scale cpu --tables 3 --t3-seeds 0,1,2 \\\n"
            "    --t3-methods stretch\n"
            "python bench/english_bench.py --no-amp --bucket-widths 0 --seeds 0,1\n"
            "python bench/seqclr_bench.py --no-such-thing 1 --amp\n"
            "python bench/gone_bench.py --out x\n"
            "```\n")
    checked, problems = bench_problems(text)
    assert checked == 4
    assert len(problems) == 3, "\n".join(problems)
    assert [p.splitlines()[0] for p in problems] == [
        "bench/paper_tables.py: no option --t3-seeds",
        "bench/seqclr_bench.py: no option --no-such-thing", "no bench/gone_bench.py"]


def test_the_checker_catches_a_bad_option_subcommand_and_choice():
    text = ("Intro.\n\n```bash\n"
            "ocrkit synth -n 10 --out data/x \\\n    --rows 2   # fine\n"
            "ocrkit train --train a.lmdb -o runs/x --no-such-option 3\n"
            "find imgs -name '*.png' | ocrkit infer -m best.pt --beam-width 2 --bogus - > o.jsonl\n"
            "OCRKIT_DEBUG=1 python -m ocrkit no-such-command\n"
            "ocrkit distill --kd-mode paperish -o runs/d\n"
            "torchrun --nproc_per_node 2 -m ocrkit train --train a.lmdb -o r --max-steps\n"
            "```\n\n```python\nocrkit train --ignored-in-python\n```\n")
    checked, problems = check_text(text)
    assert checked == 6
    joined = "\n".join(problems)
    assert len(problems) == 5, joined
    assert "--no-such-option" in joined and "--bogus" in joined
    assert "no-such-command" in joined and "paperish" in joined
    assert "--max-steps" in joined and "requires an argument" in joined
    assert "--ignored-in-python" not in joined


def test_every_relative_link_points_at_a_file():
    broken = [b for doc in LINK_DOCS for b in broken_links(doc)]
    assert not broken, "\n".join(broken)


def test_the_link_checker_catches_a_missing_file(tmp_path):
    doc = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# Part `one`: A & B\n\n## Part\n", encoding="utf-8")
    doc.write_text("# Top\n[ok](there.md#part-one-a--b) [ok](there.md#part) "
                   "[web](https://example.org/x) [anchor](#top) "
                   "`[code](missing-in-code.md)` [gone](missing.md) [bad](there.md#nowhere)\n",
                   encoding="utf-8")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert broken_links(doc) == ["page.md: missing.md",
                                     "page.md: there.md#nowhere (no such heading)"]
    finally:
        ROOT = saved


def test_the_readme_starts_with_the_demo_and_the_test_commands():
    blocks = shell_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert [b.strip() for b in blocks[:2]] == [
        'pip install torch==2.13.0 && pip install ".[fonts]" && ocrkit demo',
        'pip install torch==2.13.0 && pip install -e ".[fonts,test]" && python -m pytest -q -n auto tests',
    ]


@pytest.mark.parametrize("line, expected", [
    ("ocrkit --debug evaluate m.pt d --limit 5", []),
    ("ocrkit evaluate m.pt d --debug -q", []),
    ("ocrkit train --augment --no-augment -o x", []),
    ("ocrkit train-emu -o x -K 64 --scoring popcount", []),
    ("ocrkit synthesize --rows 2 -o x", []),
    ("ocrkit export m.pt -o x.onnx --profile paddle", ["--profile 'paddle'"]),
])
def test_check_command_on_single_lines(line, expected):
    problems = check_command(shlex.split(line)[1:])
    assert len(problems) == len(expected), problems
    for want, got in zip(expected, problems):
        assert want in got
