"""The Python example of docs/cli.md runs as written, on a store the test makes where `make demo` makes its."""
import re

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
