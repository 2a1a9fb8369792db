"""Transfer learning as a new user meets it: the commands on real photos with EfficientNet-Lite0's
published ImageNet weights, offline, and `make demo` itself."""
import re
import shutil
import subprocess
import sys

import pytest

from conftest import DEMO_PHOTOS, ROOT, demo_photo, run_cli


def ok(result):
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_imagenet_codes_of_real_photos_work_with_fit_kfold_report_and_predict(tmp_path):
    store = tmp_path / "store"
    ok(run_cli("features", "--dataset", f"folder:{DEMO_PHOTOS}", "--limit", 100, "--store", store, "--size", 96,
               "--backbone", "efficientnet_lite0", "--weights", "imagenet", "--quiet"))
    name = "efficientnet_lite0-pool-96-imagenet-fp32"
    fitted = ok(run_cli("fit", "--store", store, "--head", "logreg", "--quiet"))
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", fitted).group(1))
    assert name in fitted and accuracy > 50  # 100 photos a class; chance is 10%
    table = ok(run_cli("kfold", "--store", store, "--head", "logreg", "-k", 5, "--quiet"))
    assert f"features {name}" in table and len(re.findall(r"\| logreg \| class \|", table)) == 1
    assert ("| head | label set | settings | fold 0 (%) |" in table
            and "| mean ± std (%) | mean train accuracy (%) |" in table)
    page = re.search(r"report written to (\S+)", ok(run_cli("report", "--store", store))).group(1)
    assert name in open(page).read()
    run = re.search(r"saved to (\S+)", fitted).group(1)
    predicted = ok(run_cli("predict", "--model", run, demo_photo(tmp_path, "cifar10-sample/train/ship/0199.jpg")))
    assert predicted.startswith("top 5 classes by probability")
    best = predicted.splitlines()[1].split(": ", 1)[1].split(",")
    assert len(best) == 5 and best[0].split()[0] in {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                     "horse", "ship", "truck"}


@pytest.mark.slow
def test_make_demo_shows_imagenet_codes_far_above_random_ones(tmp_path):
    """The README's first command, offline: ImageNet codes against random-weight codes, one head."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"  # already installed: this interpreter runs the demo
    venv.mkdir()
    (venv / ".installed-run").touch()
    # at 128 px, a third of 224's work: the same commands and code paths, within the suite's time
    r = subprocess.run(["make", "-s", "demo", f"VENV={venv}", f"PY={sys.executable}", f"STORE={tmp_path / 'store'}",
                        "DEMO_SIZE=128"], cwd=ROOT, capture_output=True, text=True)
    out = ok(r)
    rows = {m.group(1): float(m.group(2)) for m in
            re.finditer(r"^logreg\s+\S+\s+(imagenet|none)\s+class\s+[\d.]+\s+([\d.]+)", out, re.M)}
    assert set(rows) == {"imagenet", "none"}, out
    assert rows["imagenet"] > 65 and rows["imagenet"] - rows["none"] > 30, out
