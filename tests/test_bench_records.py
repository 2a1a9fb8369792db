"""Published figures come from bench records: a record is refused on a dirty tree, counts the test split's
scorings by family, and `make results` rebuilds the README's tables and bench/RESULTS.md from the records
alone, the same bytes every time; the committed files are what the committed records give."""
import json
import subprocess
import sys
from xml.etree import ElementTree

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))
from bench import records, results  # noqa: E402


def a_record(name, **fields):
    return {"name": name, "table": "fixed-codes", "row": name, "family": "fixed-codes", "seeds": [0, 1, 2],
            "test_accuracy": [0.8812, 0.8835, 0.8901], "headline": False, "weights": "ImageNet",
            "commit": "b" * 40, "script": "bench/anchors.py", "script_sha256": "c" * 64,
            "command": "python bench/anchors.py --seeds 0,1,2", "machine": "a CPU", "date": "2026-12-07",
            "test_scorings": 3, **fields}


@pytest.fixture
def bench_tree(tmp_path, monkeypatch):
    """A README with the markers, an empty records folder and the scorings history, in a folder of its own."""
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{results.DEMO_START}\nold demo\n{results.DEMO_END}\n\n## Results\n\n"
                      f"{results.START}\nold\n{results.END}\n\nafter\n")
    (tmp_path / "records").mkdir()
    (tmp_path / "scorings.json").write_text(json.dumps({"fixed-codes": {"before_records": 17, "history": "h"},
                                                          "finetune-lite0": {"before_records": 11, "history": "h"}}))
    monkeypatch.setattr(records, "RECORDS", tmp_path / "records")
    monkeypatch.setattr(records, "SCORINGS", tmp_path / "scorings.json")
    monkeypatch.setattr(results, "README", readme)
    monkeypatch.setattr(results, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(results, "BUDGET_FIGURE", tmp_path / "label-budgets.svg")
    return tmp_path


def write(tree, record):
    (tree / "records" / f"{record['name'].replace('/', '--')}.json").write_text(json.dumps(record))


def test_tables_come_from_the_records_alone_and_the_same_bytes_every_time(bench_tree):
    write(bench_tree, a_record("fixed-codes/lite0/chosen", headline=True, test_interval=[0.875, 0.892],
                               kfold_accuracy=[0.84, 0.85, 0.83], wall_seconds=[60, 62, 61]))
    write(bench_tree, a_record("sweep/lite0/x", table="sweep", test_accuracy=None, kfold_accuracy=[0.8, 0.81]))
    first = results.render()
    assert first == results.render()
    readme, page = first[results.README], first[results.RESULTS]
    assert readme.startswith("# x\n\nbefore\n") and readme.endswith("\n\nafter\n") and "old\n" not in readme
    headline = readme.split(results.START)[1].split(results.END)[0]
    assert "88.49 ± 0.46" in headline and "88.12 / 88.35 / 89.01" in headline and "87.50–89.20" in headline
    assert "sweep/lite0/x" not in headline  # only headlines reach the README
    assert "## Which codes: k-fold on the training split" in page and "80.50 ± 0.71" in page
    assert "`python bench/anchors.py --seeds 0,1,2`" in page and "3 min" in page


def test_a_table_shows_its_own_columns_and_the_readme_only_the_shared_ones(bench_tree):
    write(bench_tree, a_record("export-design/int8/none", table="export-design", test_accuracy=None,
                               agreement=0.664, images=500, megabytes=4.21, headline=True))
    write(bench_tree, a_record("fixed-codes/x", headline=True))
    readme, page = results.render().values()
    assert "| same class as the float model (%) | file (MB) | commit |" in page and "| 66.40 of 500 | 4.2 |" in page
    headline = readme.split(results.START)[1]
    assert "same class" not in headline and headline.count("| " + "b" * 7 + " |") == 2  # both rows, shared columns


def test_the_fine_tune_shows_its_seeds_views_and_design_history(bench_tree):
    """Short of three seeds the fine-tune is a record under way, not a result; with three, a headline that says
    beside it that its recipe was designed while the test split was scored."""
    fields = dict(table="finetune", family="finetune-lite0", validation_accuracy=[0.931], best_epochs=[9],
                  test_views=[[176, True]], seeds=[0], test_accuracy=[0.9376])
    write(bench_tree, a_record("finetune/lite0/x", **fields))
    readme, page = results.render().values()
    assert "| 93.10 | 9, side 176 flip-averaged |" in page and "designed while the test split was scored" in page
    section = " ".join(readme.split(results.START)[1].split(results.END)[0].split())
    assert "the fine-tune of Lite0" in section and "(11 scorings before records" in section
    assert "Records under way, short of a headline's three seeds: the fine-tune of Lite0" in section
    three = {k: v * 3 for k, v in fields.items() if isinstance(v, list)}
    write(bench_tree, a_record("finetune/lite0/x", **{**fields, **three, "seeds": [0, 1, 2], "headline": True}))
    section = " ".join(results.render()[results.README].split(results.START)[1].split(results.END)[0].split())
    assert "93.76 / 93.76 / 93.76" in section and "The fine-tune's recipe was designed while" in section
    assert "(the fine-tune of Lite0," not in section and "under way" not in section


def test_the_frontier_puts_every_method_by_its_cost_from_images_to_a_model(bench_tree):
    write(bench_tree, a_record("fixed-codes/a", row="logreg on codes", extraction_seconds=600, wall_seconds=[60] * 3))
    write(bench_tree, a_record("from-scratch/b", table="from-scratch", family="airbench", row="airbench",
                               seeds=[0], test_accuracy=[0.94], wall_seconds=[5400]))
    write(bench_tree, a_record("sweep/c", table="sweep", test_accuracy=None, wall_seconds=[1]))  # no test figure
    readme, page = results.render().values()
    lines = [line for line in page.split("## The frontier")[1].splitlines() if line.startswith("| ")]
    assert lines[2].startswith("| logreg on codes |") and "| 88.49 ± 0.46 | 0.18 |" in lines[2]  # (600 + 60) s
    assert lines[3].startswith("| airbench |") and "| 94.00 (1 seed so far) | 1.50 |" in lines[3]
    assert len(lines) == 4 and "| logreg on codes |" in readme.split(results.START)[1]


def test_the_label_budget_table_says_which_method_wins_at_each_budget_and_what_each_cost(bench_tree):
    def budget(n, head, accs, extraction, fit):
        write(bench_tree, a_record(f"label-budget/{n}/{head}", table="label-budget", per_class=n, head=head,
                                   features="efficientnet_lite0-x" if extraction else "pixels", test_accuracy=accs,
                                   extraction_seconds=extraction, wall_seconds=[fit] * len(accs),
                                   labelled=50_000 if n is None else 10 * n, classes=10))

    budget(10, "logreg", [0.6, 0.62, 0.61], 600, 1)
    budget(10, "airbench", [0.25, 0.27, 0.26], 0, 120)
    budget(None, "logreg", [0.843] * 3, 600, 180)
    budget(None, "airbench", [0.94, 0.941, 0.939], 0, 5400)
    budget(100, "logreg", [0.8] * 3, 600, 5)  # one method only at this budget: no row
    files = results.render()
    readme, page = files[results.README], files[results.RESULTS]
    rows = [line for line in page.split("## Which wins at each label budget")[1].splitlines() if line.startswith("| ")]
    assert rows[2] == ("| 10 | logreg on efficientnet_lite0 codes | 61.00 ± 1.00 | airbench | +35.00 | "
                       "logreg 10 min; airbench 2 min |")
    assert rows[3] == "| all | airbench on pixels | 94.00 ± 0.10 | logreg | +9.70 | airbench 1.5 h; logreg 13 min |"
    assert len(rows) == 4 and "Which wins at each label budget" in readme
    # the fine-tune's headline joins at "all" its labels (a fine-tune on fewer is not run)
    write(bench_tree, a_record("finetune/lite0/x", table="finetune", headline=True, test_accuracy=[0.935, 0.937, 0.934],
                               wall_seconds=[7000, 7200, 7100], validation_accuracy=[0.93] * 3, best_epochs=[9] * 3,
                               test_views=[[176, True]] * 3))
    files = results.render()
    rows = [line for line in files[results.RESULTS].split("## Which wins at each label budget")[1].splitlines()
            if line.startswith("| ")]
    assert rows[3] == ("| all | airbench on pixels | 94.00 ± 0.10 | Lite0 fine-tune | +0.47 | airbench 1.5 h; "
                       "Lite0 fine-tune 2.0 h; logreg 13 min |")
    # The figure: one line a method through its budgets in order ("all" at 5,000 a class), drawn from the records
    assert "](bench/label-budgets.svg)" in readme and "](label-budgets.svg)" in page
    svg = ElementTree.fromstring(files[results.BUDGET_FIGURE])  # with the fine-tune's record, written above
    lines = {}
    for polyline in svg.iter("{http://www.w3.org/2000/svg}polyline"):
        lines[polyline.get("stroke")] = [tuple(map(float, p.split(","))) for p in polyline.get("points").split()]
    finetune, airbench, logreg = lines.values()  # methods in name order (capitals first)
    assert len(airbench) == 2 and len(logreg) == 3 and len(finetune) == 1
    assert [x for x, _ in logreg] == sorted(x for x, _ in logreg) and airbench[-1][0] == logreg[-1][0]
    assert airbench[0][1] > logreg[0][1] and airbench[-1][1] < logreg[-1][1]  # SVG's y grows downwards
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert "airbench on pixels, 5,000 a class: 94.00 ± 0.10%" in titles
    assert "Lite0 fine-tune on pixels, 5,000 a class: 93.53 ± 0.15%" in titles


def test_no_figure_until_two_methods_have_budgets(bench_tree):
    write(bench_tree, a_record("label-budget/10/logreg", table="label-budget", per_class=10, head="logreg",
                               features="efficientnet_lite0-x", labelled=100, classes=10, wall_seconds=[1] * 3))
    files = results.render()
    assert results.BUDGET_FIGURE not in files and "label-budgets.svg" not in files[results.README]


def test_the_demo_section_shows_what_make_demo_printed(bench_tree):
    for weights, acc in (("imagenet", 0.744), ("none", 0.3)):
        write(bench_tree, a_record(f"demo/{weights}", table="demo", family="demo", seeds=[0], test_accuracy=[acc],
                                   test_interval=[acc - 0.02, acc + 0.02], wall_seconds=600.0,
                                   output="head  test accuracy (%)\nlogreg  74.40"))
    readme = results.render()[results.README]
    demo = readme.split(results.DEMO_START)[1].split(results.DEMO_END)[0]
    assert "names 74.40% of the" in demo and "network, 30.00%" in demo
    assert "    logreg  74.40" in demo and "old demo" not in readme


def test_check_fails_when_a_file_differs_from_its_records(bench_tree, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["results.py"])
    results.main()
    monkeypatch.setattr(sys, "argv", ["results.py", "--check"])
    results.main()
    results.RESULTS.write_text(results.RESULTS.read_text() + "a figure typed by hand\n")
    with pytest.raises(SystemExit, match="RESULTS.md differ from bench/records: run make results"):
        results.main()


def test_test_scorings_count_the_history_and_every_record_of_the_family(bench_tree):
    write(bench_tree, a_record("fixed-codes/a"))  # 3 seeds scored
    write(bench_tree, a_record("sweep/b", table="sweep", test_accuracy=None))  # none
    write(bench_tree, a_record("export-design/c", family="export", test_accuracy=None,
                               other_scorings={"fixed-codes": 1}))  # a head it fitted on the way scored the test split
    assert records.family_scorings("fixed-codes") == 17 + 3 + 1
    assert records.family_scorings("fixed-codes", exclude="fixed-codes/a") == 17 + 1
    (bench_tree / "records" / "export-design--c.json").unlink()
    run = {"commit": "d" * 40, "script": "bench/x.py", "script_sha256": "e" * 64, "command": "python bench/x.py",
           "machine": "m", "date": "2026-12-07"}
    path = records.save(run, "fixed-codes/a", table="fixed-codes", row="r", family="fixed-codes", seeds=[0, 1],
                        test_accuracy=[0.5, 0.6], headline=True, weights="ImageNet")
    again = json.loads(path.read_text())
    assert again["test_scorings"] == 17 + 3 + 2 and again["earlier_scorings"] == 3  # the replaced one's still count
    assert records.family_scorings("fixed-codes") == 17 + 3 + 2
    with pytest.raises(ValueError, match="lacks"):
        records.save(run, "x", table="t")


def test_a_record_of_runs_counts_each_run_once_however_often_it_is_written_again(bench_tree):
    """A run spanning sessions writes its record after each seed; a seed's run found again is not scored again."""
    run = {"commit": "d" * 40, "script": "bench/x.py", "script_sha256": "e" * 64, "command": "python bench/x.py",
           "machine": "m", "date": "2026-12-07"}

    def save(runs):
        fields = dict(table="finetune", row="r", family="fixed-codes", seeds=list(range(len(runs))), headline=False,
                      test_accuracy=[0.9] * len(runs), weights="ImageNet", runs=runs)
        return json.loads(records.save(run, "finetune/a", **fields).read_text())["test_scorings"]

    assert save(["r0"]) == 17 + 1
    assert save(["r0", "r1"]) == 17 + 2
    assert save(["r0"]) == 17 + 2  # the same command again: r0 is found, then r1
    assert save(["r0", "r1"]) == 17 + 2
    assert save(["r0", "r1", "r2"]) == 17 + 3
    assert save(["r0", "r5"]) == 17 + 4  # a run trained again (other code): its scoring counts too


def test_the_bootstrap_interval_holds_the_mean_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    small = (rng.random((3, 200)) < 0.8).astype(int)
    large = (rng.random((3, 20000)) < 0.8).astype(int)
    lo, hi = records.bootstrap_interval(small)
    assert lo < small.mean() < hi and records.bootstrap_interval(small) == [lo, hi]
    lo2, hi2 = records.bootstrap_interval(large)
    assert lo2 < large.mean() < hi2 and hi2 - lo2 < (hi - lo) / 5


def test_a_record_is_refused_on_a_tree_with_uncommitted_changes(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "x.py").write_text("print(1)\n")
    git("add", ".")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x")
    monkeypatch.setattr(records, "ROOT", tmp_path)
    run = records.begin(str(tmp_path / "bench" / "x.py"), [str(tmp_path / "bench" / "x.py"), "--seeds", "0"])
    assert run["script"] == "bench/x.py" and run["command"] == "python bench/x.py --seeds 0"
    assert run["script_sha256"] == __import__("hashlib").sha256(b"print(1)\n").hexdigest() and "note" not in run
    assert records.begin(str(tmp_path / "bench" / "x.py"), note="beside a fine-tune")["note"] == "beside a fine-tune"
    (tmp_path / "bench" / "records").mkdir()
    (tmp_path / "bench" / "records" / "new.json").write_text("{}")  # a new record is not a change
    records.begin(str(tmp_path / "bench" / "x.py"))
    (tmp_path / "bench" / "x.py").write_text("print(2)\n")
    with pytest.raises(SystemExit, match="uncommitted changes .*bench/x.py"):
        records.begin(str(tmp_path / "bench" / "x.py"))


def test_every_bench_script_that_writes_records_takes_a_note_of_its_conditions():
    import importlib

    writers = [p.stem for p in (ROOT / "bench").glob("*.py") if "begin(__file__" in p.read_text()]
    assert len(writers) >= 9
    for name in writers:
        p = importlib.import_module(f"bench.{name}").parser()
        required = [a.option_strings[0] for a in p._actions if a.required]
        argv = [x for option in required for x in (option, "x")] + ["--note", "beside the test suite"]
        assert p.parse_args(argv).note == "beside the test suite", name


def test_the_committed_readme_and_results_are_what_the_committed_records_give():
    """What CI's `make check-results` checks, here too so that `make test` says it first."""
    for path, text in results.render().items():
        assert path.read_text() == text, f"{path.name} differs from bench/records: run make results"
