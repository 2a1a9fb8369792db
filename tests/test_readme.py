"""The Python example of docs/cli.md runs as written, on a store the test makes where `make demo` makes its; every
command the README and the bench records show parses with the real parsers."""
import re
import shlex
from pathlib import Path

import click
import pytest

from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import ROOT


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    (block,) = python_blocks((ROOT / "docs" / "cli.md").read_text())
    store = tmp_path / "store" / "demo"  # the path and feature set name `make demo` gives; tiny data
    ingest(store, IngestConfig("digits", limit=60), progress=False, log=lambda m: None)
    extract_features(store, FeatureConfig("efficientnet_lite0", "none", size=32), progress=False, log=lambda m: None,
                     name="efficientnet_lite0-pool-224-imagenet-fp32")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/cli.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "['efficientnet_lite0-pool-224-imagenet-fp32']" and printed[1].startswith("test accuracy")
    assert 0 <= float(printed[2]) <= 1 and printed[3].startswith("{'data.h5': None")


# -- every command the README shows runs as written: parsed by the real parsers -------------------------------
COMMAND = r"(?:cnncodes |python bench/\S+\.py\b)"
SHOWN = re.compile(rf"^ {{4}}({COMMAND}.*)$|`({COMMAND}[^`]*)`", re.M)


def shown_commands(text: str) -> list[str]:
    """`cnncodes ...` and `python bench/...` commands in code lines and inline code, comments cut; those with a
    `...` are synopses, marked so, and left out."""
    found = [re.sub(r"\s+#.*$", "", block or inline).strip() for block, inline in SHOWN.findall(text)]
    return [c for c in found if "..." not in c]


def parse_cnncodes(args: list[str]):
    """click's own parsing of the group and the command: an unknown or missing option fails it."""
    from cnncodes.cli import cli

    with cli.make_context("cnncodes", list(args), resilient_parsing=False) as ctx:
        name, command, rest = cli.resolve_command(ctx, ctx.protected_args + ctx.args)
        command.make_context(name, rest, parent=ctx).close()


def parse_bench(script: str, args: list[str]):
    """The script's own argparse parser (its `parser()`); a script without one takes no arguments."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{Path(script).stem}", ROOT / script)
    assert spec, f"{script} does not exist"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "parser"):
        module.parser().parse_args(args)
    else:
        assert not args, f"{script} takes no arguments"


def check_command(command: str):
    words = shlex.split(command)
    if words[0] == "cnncodes":
        parse_cnncodes(words[1:])
    else:
        parse_bench(words[1], words[2:])


def readme_and_records() -> list[str]:
    import json

    shown = shown_commands((ROOT / "README.md").read_text())
    recorded = [json.loads(p.read_text())["command"] for p in sorted((ROOT / "bench" / "records").glob("*.json"))]
    return sorted(set(shown + recorded))


@pytest.mark.parametrize("command", readme_and_records())
def test_every_command_the_readme_and_the_records_show_parses(command, tmp_path, monkeypatch):
    """Paths the command names (a store, a run, a folder of photos) are made first, as `make demo` and the user
    would have: the parser checks that they exist."""
    monkeypatch.chdir(tmp_path)
    for word in shlex.split(command)[1:]:
        if "/" in word and not word.startswith(("-", "/")) and not word.endswith(".py") and ":" not in word:
            (tmp_path / word).mkdir(parents=True, exist_ok=True)
    check_command(command)


def test_a_command_with_an_unknown_or_missing_option_fails_the_check():
    assert "cnncodes info    --store store/demo" in shown_commands("    cnncodes info    --store store/demo  # what\n")
    assert shown_commands("run `cnncodes ...` or `cnncodes fit --store s`") == ["cnncodes fit --store s"]
    check_command("cnncodes fit --store s --head logreg")
    for wrong in ("cnncodes fit --store s --heads logreg", "cnncodes fit --head", "cnncodes nosuch",
                  "python bench/results.py --no-such-option"):
        with pytest.raises((click.UsageError, SystemExit)):
            check_command(wrong)
