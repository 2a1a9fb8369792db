"""`cnncodes audit` (issues 23, 40): duplicates across splits counted as leakage, flipped labels ranked near the
top, an outlier flagged, the table's columns and order, the record in the store, the perceptual hashes and the
codes' ratio rule, the label check's choice of features, and bad input in one line.

The store is made of real handwritten digits (scikit-learn's, as image files in class folders, with planted
copies, flipped labels and a noise image) and its "codes" are the pixels, written as a feature set: nothing
here runs a network, and the planted truth is known exactly."""
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnncodes.classifiers.audit import audit, image_hashes, label_issues
from cnncodes.classifiers.audit.audit import COLUMNS, load_audits, run_audit
from cnncodes.classifiers.audit.duplicates import HASH_DISTANCE, RATIO, candidate_pairs, code_groups
from cnncodes.classifiers.heads.neighbors import Neighbors
from cnncodes.cli import cli
from cnncodes.features.store import FeatureStore
from cnncodes.features.writers import FeatureSetWriter
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import write_image

TRAIN, TEST = 50, 15      # images a class in each split
COPIES, FLIPS = 6, 15     # test images copied from training; training images filed under a wrong class
quiet = {"progress": False, "log": lambda m: None}


def digit_tree(root, classes=range(10), seed=0):
    """(tree, planted): class folders of digit images with train/ and test/, and what was planted where, as
    the paths the store records as sources."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)
    rng = np.random.default_rng(seed)
    planted = {"copies": [], "flips": [], "noise": []}
    for c in classes:
        rows = rng.permutation(np.flatnonzero(digits.target == c))[:TRAIN + TEST]
        for split, part in (("train", rows[:TRAIN]), ("test", rows[TRAIN:])):
            for i, row in enumerate(part):
                write_image(root / split / str(c) / f"{i:03d}.png", images[row])
    for i in range(COPIES):  # a training image filed again in the test split
        c = i % len(classes)
        shutil.copy(root / "train" / str(c) / f"{i:03d}.png", root / "test" / str(c) / f"copy{i}.png")
        planted["copies"].append((f"train/{c}/{i:03d}.png", f"test/{c}/copy{i}.png"))
    for i in range(FLIPS):  # moved to the next class's folder
        c = i % len(classes)
        wrong = (c + 1) % len(classes)
        (root / "train" / str(c) / f"{TRAIN - 1 - i // len(classes):03d}.png").rename(
            root / "train" / str(wrong) / f"flip{i}.png")
        planted["flips"].append(f"train/{wrong}/flip{i}.png")
    write_image(root / "train" / "3" / "noise.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    planted["noise"].append("train/3/noise.png")
    return root, planted


def write_pixel_codes(store_dir, name="pixels"):
    """Codes of the store's images as a complete feature set bound to its data: the pixels, centred (so that
    only alike digits point alike) through a seeded random ReLU layer (so that codes are positive, as pooled
    CNN activations are); the noise image's code is a row of noise, far from every class."""
    store = FeatureStore.open(store_dir)
    pixels = store.images().reshape(store.n, -1).astype(np.float32)
    rng = np.random.default_rng(0)
    codes = np.maximum((pixels - pixels.mean(axis=0)) @ rng.normal(size=(pixels.shape[1], 256)), 0)
    codes[[s.endswith("noise.png") for s in store.sources()]] = rng.normal(size=codes.shape[1])
    writer = FeatureSetWriter(store.path, name, f"{name}-fingerprint", {"backbone": name}, store.n, codes.shape[1],
                              None, data_sha256=store.content)
    writer.commit(0, codes, None)
    writer.assemble({})


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    tree, planted = digit_tree(root / "tree")
    store = ingest(root / "store", IngestConfig(f"folder:{tree}"), **quiet).path
    write_pixel_codes(store)
    return store, planted


@pytest.fixture(scope="module")
def audited(planted_store, tmp_path_factory):
    """One audit of a copy of the planted store: (store, planted, record)."""
    store = shutil.copytree(planted_store[0], tmp_path_factory.mktemp("audited") / "store")
    return store, planted_store[1], run_audit(store, progress=False)


def by_source(record, kind):
    return [r for r in record["rows"] if r["kind"] == kind]


def sources(store):
    return list(FeatureStore.open(store).sources())


def test_planted_copies_across_splits_are_exact_duplicates_and_counted_as_leakage(audited):
    store, planted, record = audited
    pairs = {(r["source"], r["other"]): r for r in by_source(record, "duplicate")}
    for pair in planted["copies"]:
        assert pair in pairs and pairs[pair]["exact"] and pairs[pair]["score"] > 0.999
        assert (pairs[pair]["split"], pairs[pair]["other_split"]) == ("train", "test")
    leaked_exact = {r["other"] for r in pairs.values() if r["exact"] and r["other_split"] == "test"}
    assert {copy for _, copy in planted["copies"]} <= leaked_exact
    assert record["leakage"]["leaked"] >= COPIES and record["leakage"]["leaked_exact"] >= COPIES
    test_images = FeatureStore.open(store).counts()["test"]
    assert record["leakage"]["rate"] == pytest.approx(record["leakage"]["leaked"] / test_images)
    assert record["counts"]["duplicate"] == len(pairs) and record["settings"]["ratio"] == RATIO
    assert all(pairs[pair]["evidence"] == "exact" for pair in planted["copies"])
    assert record["label_model_accuracy"]["train_out_of_fold"] > 0.8  # the digits are learnt: flips stand out
    assert record["label_model"]["features"] == "pixels" and "only complete set" in record["label_model"]["why"]
    assert 0.05 < record["label_model"]["temperature"] < 20


def test_planted_flipped_labels_rank_near_the_top(audited):
    _, planted, record = audited
    labels = by_source(record, "label")
    top = [r["source"] for r in labels[:FLIPS + 1]]  # the noise image's label is wrong too
    found = [r for r in labels if r["source"] in planted["flips"] and r["source"] in top]
    assert len(found) >= 2 / 3 * FLIPS, top
    filed = [int(r["source"].split("/")[1]) for r in found]  # the class folder a digit was moved into
    assert [r["given"] for r in found] == [str(c) for c in filed]
    drawn = sum(r["suggested"] == str((c - 1) % 10) for r, c in zip(found, filed))  # the digit itself
    assert drawn > len(found) / 2  # chance: 1 in 9


def test_a_noise_image_is_the_first_outlier(audited):
    _, planted, record = audited
    outliers = by_source(record, "outlier")
    assert outliers and outliers[0]["source"] == planted["noise"][0]
    assert len(outliers) < 0.05 * sum(record["images"].values())  # the tail, not a share of every image


def test_the_table_has_the_columns_in_order_most_certain_first_and_the_store_keeps_it(audited, tmp_path):
    store, _, record = audited
    folder = store / "audits" / "pixels"
    with open(folder / "audit.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS
    kinds = [r[0] for r in rows[1:]]
    assert kinds == sorted(kinds, key=["duplicate", "label", "outlier"].index) and set(kinds) == {"duplicate", "label",
                                                                                                     "outlier"}
    for kind in ("label", "outlier"):
        scores = [float(r[5]) for r in rows[1:] if r[0] == kind]
        assert scores == sorted(scores, reverse=True)
    # duplicates: identical images first, then those both kinds of evidence confirm, then by the codes' similarity
    certainty = [(r[6] != "exact", r[6] != "hashes+codes", -float(r[5])) for r in rows[1:] if r[0] == "duplicate"]
    assert certainty == sorted(certainty) and {r[6] for r in rows[1:] if r[0] == "duplicate"} <= {
        "exact", "hashes", "codes", "hashes+codes"}
    known = set(sources(store))
    assert all(r[1] in known and (r[2] in known or (r[0] != "duplicate" and r[2] == "")) for r in rows[1:])
    assert {r[3] for r in rows[1:]} <= {str(c) for c in range(10)}  # class names, not numbers
    (saved,) = load_audits(store)
    assert saved["stale"] is None and saved["features"] == "pixels" and saved["code"]["source_sha256"]
    assert [r["row"] for r in saved["rows"]] == [r["row"] for r in record["rows"]]
    assert sources(store)[saved["rows"][0]["row"]] == saved["rows"][0]["source"]
    assert not [p for p in folder.iterdir() if p.name not in ("audit.json", "audit.csv")]  # no temporary files


def test_a_changed_table_is_reported_damaged_by_load_audits(audited, tmp_path):
    store = shutil.copytree(audited[0], tmp_path / "store")
    with open(store / "audits" / "pixels" / "audit.csv", "a") as f:
        f.write("outlier,x,,0,,1\n")
    (found,) = load_audits(store)
    assert "audit.csv fails its checksum" in found["damaged"]


def test_the_command_prints_the_summary_and_writes_out(audited, tmp_path):
    store, _, record = audited
    out = tmp_path / "audit.csv"
    result = CliRunner().invoke(cli, ["audit", "--store", str(store), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"pHash and dHash within {HASH_DISTANCE} bits of 64" in result.output
    assert "of pixels (the store's only complete set)" in result.output
    assert f"leakage: {record['leakage']['leaked']} of " in result.output and "saved to " in result.output
    assert out.read_text() == (store / "audits" / "pixels" / "audit.csv").read_text()
    again = CliRunner().invoke(cli, ["audit", "--store", str(store), "--out", str(out), "--quiet"])
    assert again.exit_code == 1 and "it already exists" in again.output


def test_an_out_folder_that_cannot_be_written_is_refused_before_the_audit(audited, tmp_path):
    store, _, _ = audited
    out = Path("/proc/cnncodes-audit.csv")  # a folder no one, not even root, can add a file to
    result = CliRunner().invoke(cli, ["audit", "--store", str(store), "--out", str(out), "--quiet"])
    assert result.exit_code == 1 and result.output.startswith("error: --out /proc/cnncodes-audit.csv: its folder "
                                                              "cannot be written"), result.output
    assert len(result.output.splitlines()) == 1 and "leakage" not in result.output  # refused before any work


def neighbors_of(distances) -> Neighbors:
    d = np.asarray(distances, np.float32)
    return Neighbors(np.tile(np.arange(1, d.shape[1] + 1), (len(d), 1)), 1 - d)


def test_a_group_of_copies_is_the_neighbours_before_the_first_jump_in_distance():
    groups = code_groups(neighbors_of([[0.05, 0.30, 0.31, 0.32],    # one copy, far closer than the next
                                       [0.00, 0.00, 0.40, 0.41],    # two identical copies: 0/0 is no jump
                                       [0.20, 0.22, 0.24, 0.26],    # crowded: no copy
                                       [0.25, 0.26, 0.27, 0.05]]))  # a jump only down the list is none
    assert groups.tolist() == [1, 2, 0, 0]
    crowded = neighbors_of([[0.25, 0.30, 0.33, 0.36]])  # 0.83 of the next: not far enough at the default
    assert code_groups(crowded).tolist() == [0] and code_groups(crowded, ratio=0.9).tolist() == [1]


def test_candidate_pairs_are_each_pair_once_with_the_lower_row_first():
    a = Neighbors(np.array([[1, 2], [0, 2], [1, 0]]), np.ones((3, 2), np.float32))
    b = Neighbors(np.array([[2], [2], [0]]), np.ones((3, 1), np.float32))
    first, second = candidate_pairs(a, b)
    assert list(zip(first.tolist(), second.tolist())) == [(0, 1), (0, 2), (1, 2)]


def demo_photos(n=3):
    """Real photos: the offline demo's committed CIFAR-10 sample."""
    import zipfile

    import cv2

    with zipfile.ZipFile(Path(__file__).parents[1] / "demo" / "cifar10-sample.zip") as z:
        names = sorted(n for n in z.namelist() if n.endswith((".jpg", ".png")))[:n]
        return [cv2.cvtColor(cv2.imdecode(np.frombuffer(z.read(m), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                for m in names]


def test_a_re_encoded_rescaled_or_brightened_copy_keeps_its_hashes_and_another_photo_does_not():
    import cv2

    photo, other, _ = demo_photos()
    h, w = photo.shape[:2]
    jpeg = cv2.imdecode(cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 50])[1], cv2.IMREAD_UNCHANGED)
    rescaled = cv2.resize(cv2.resize(photo, (w // 2, h // 2), interpolation=cv2.INTER_AREA), (w, h),
                          interpolation=cv2.INTER_CUBIC)
    brighter = np.clip(photo * 1.2, 0, 255).astype(np.uint8)
    hashes = image_hashes.hash_images(np.stack([photo, jpeg, rescaled, brighter, other]))
    first = np.zeros(4, int)
    for kind in image_hashes.KINDS:
        d = image_hashes.hamming(hashes, first, np.arange(1, 5), kind)
        assert (d[:3] <= HASH_DISTANCE).all() and d[3] > HASH_DISTANCE, (kind, d)
    assert not image_hashes.flat(hashes).any()


def test_a_flat_image_s_hashes_are_no_evidence():
    flat = np.full((2, 16, 16, 3), 0, np.uint8)
    flat[1] = 200  # another colour: the same hashes, not the same image
    hashes = image_hashes.hash_images(flat)
    assert image_hashes.flat(hashes).all()  # else a duplicate pair by hashes:
    assert all(image_hashes.hamming(hashes, [0], [1], kind)[0] <= HASH_DISTANCE for kind in image_hashes.KINDS)


def test_flat_images_are_named_in_one_line_saying_what_still_judges_them(audited):
    from cnncodes.classifiers.audit.audit import format_audit

    record = audited[2]
    assert record["counts"]["flat_images"] == 0 and "flat images" not in format_audit(record)
    flagged = format_audit({**record, "counts": {**record["counts"], "flat_images": 2}})
    assert "2 flat images (one colour, or a pixel enlarged): their hashes say nothing, so only their codes" in flagged


def test_hashes_are_kept_in_the_store_and_computed_again_when_their_file_is_damaged(copy_of, monkeypatch):
    store = FeatureStore.open(copy_of)
    (kept,) = (copy_of / "hashes").glob("*.npy")  # the audit above kept them
    assert image_hashes.method() in kept.name
    monkeypatch.setattr(image_hashes, "hash_images", lambda images: pytest.fail("hashed again"))
    first = image_hashes.image_hashes(store, progress=False)
    assert first.shape == (store.n, image_hashes.WIDTH)
    data = bytearray(kept.read_bytes())
    data[-1] ^= 1
    kept.write_bytes(bytes(data))
    monkeypatch.undo()
    again = image_hashes.image_hashes(store, progress=False)  # the damaged file fails its seal: hashed again
    assert np.array_equal(again, first) and len(list((copy_of / "hashes").glob("*.npy"))) == 1


def test_the_label_check_uses_every_set_joined_or_the_sweep_s_choice(copy_of):
    from cnncodes.classifiers.audit.label_model import label_features
    from cnncodes.features.sealed import write_sealed

    write_pixel_codes(copy_of, name="again")
    store = FeatureStore.open(copy_of)
    assert label_features(store, "class") == {"features": "again+pixels", "why": "every complete set joined"}
    sweep = copy_of / "runs" / "sweep-logreg-class-k3-x"
    sweep.mkdir(parents=True)
    write_sealed(sweep / "sweep.json", {"kind": "sweep", "head": "logreg", "label": "class", "chosen": "again",
                                        "candidates": [{"features": "again", "mean": 0.9}]})
    chosen = label_features(store, "class")
    assert chosen["features"] == "again" and "sweep with logreg" in chosen["why"]
    assert label_features(store, "class", "pixels")["features"] == "pixels"
    record = run_audit(copy_of, features="pixels", progress=False)
    assert record["label_model"]["features"] == "again"


# -- bad input: one line naming the thing and the fix, nothing stored damaged --------------------------------------
@pytest.fixture
def copy_of(audited, tmp_path):
    return shutil.copytree(audited[0], tmp_path / "store")


def refused(store, *args) -> str:
    before = (store / "audits" / "pixels" / "audit.json").read_bytes() if (store / "audits").exists() else None
    result = CliRunner().invoke(cli, ["audit", "--store", str(store), "--quiet", *args])
    assert result.exit_code == 1 and result.output.startswith("error: ") and len(result.output.splitlines()) == 1, \
        result.output
    if before is not None:
        assert (store / "audits" / "pixels" / "audit.json").read_bytes() == before
    return result.output


def test_a_feature_set_that_does_not_exist(copy_of):
    assert "no feature set 'nope'" in refused(copy_of, "--features", "nope")


def test_fewer_images_than_folds_names_a_k_that_works(copy_of):
    import re
    from types import SimpleNamespace

    from cnncodes.classifiers.audit.audit import check_audit_input
    from cnncodes.features.errors import UserError

    for k in ("60", "10000"):
        said = refused(copy_of, "-k", k)
        assert "fewer than the folds asked for; use -k" in said
    suggested = re.search(r"use -k (\d+) or fewer", said)[1]
    done = CliRunner().invoke(cli, ["audit", "--store", str(copy_of), "-k", suggested, "--quiet"])
    assert done.exit_code == 0, done.output  # the advice is followed and works
    one = SimpleNamespace(path="store")  # a class of one training image: no -k helps, the fix is named
    with pytest.raises(UserError, match="class 'b' has 1 training image in store.*add images of it"):
        check_audit_input(one, "class", ["a", "b"], np.array([0, 0, 0, 1]), 2)


def test_a_store_without_codes(planted_store, tmp_path):
    store = shutil.copytree(planted_store[0], tmp_path / "store", ignore=shutil.ignore_patterns("features"))
    assert "has no feature sets yet" in refused(store)
    assert not (store / "audits").exists()


def test_a_label_set_with_one_class(tmp_path, monkeypatch):
    """No source ingest knows makes one (class folders need two), but a store's label set can hold one class."""
    from cnncodes.pipeline.sources import ingest as ingest_module
    from cnncodes.pipeline.sources.contract import in_memory_source

    images = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    one = in_memory_source("one", images, {"class": np.zeros(12, np.int64)}, {"class": ["only"]},
                           np.repeat(np.uint8([0, 1]), [8, 4]), "one class", origin=lambda i: f"one[{i}]")
    monkeypatch.setattr(ingest_module, "open_source", lambda *args, **kwargs: one)
    store = ingest(tmp_path / "store", IngestConfig("digits"), **quiet).path
    write_pixel_codes(store)
    assert "label set 'class'" in refused(store) and "has 1 class among its training images ('only')" in refused(store)
    assert not (store / "audits").exists()


def test_without_cleanlab_or_imagehash_the_fix_is_named(copy_of, monkeypatch):
    monkeypatch.setattr(label_issues, "find_label_issues", None)
    assert "pip install cnncodes[audit]" in refused(copy_of)
    monkeypatch.undo()
    monkeypatch.setattr(image_hashes, "imagehash", None)
    assert "need imagehash" in refused(copy_of) and "pip install cnncodes[audit]" in refused(copy_of)


def test_the_help_names_the_defaults():
    result = CliRunner().invoke(cli, ["audit", "--help"])
    assert f"[{RATIO:g}:" in " ".join(result.output.split()) and f"[{HASH_DISTANCE}]" in result.output


@pytest.mark.parametrize("option, value", [("--ratio", "1.5"), ("--ratio", "0"), ("--hash-distance", "40"),
                                           ("--label-probability", "1")])
def test_settings_out_of_range_are_refused(copy_of, option, value):
    result = CliRunner().invoke(cli, ["audit", "--store", str(copy_of), option, value])
    assert result.exit_code == 2 and option in result.output


def test_an_interrupted_audit_keeps_the_one_before_and_leaves_no_folder_of_its_own(copy_of, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit, "held_out_probabilities", interrupted)
    folder = copy_of / "audits" / "pixels"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(KeyboardInterrupt):
        run_audit(copy_of, progress=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    shutil.rmtree(copy_of / "audits")
    with pytest.raises(KeyboardInterrupt):
        run_audit(copy_of, progress=False)
    assert not (copy_of / "audits").exists()


def test_the_report_shows_the_audit_with_thumbnails_and_rings_its_rows_on_the_map(copy_of, tmp_path, monkeypatch):
    from cnncodes.classifiers.report import report_codes
    from cnncodes.classifiers.report.report import build_report

    rings, maps = {}, []
    real = report_codes.map_figure
    monkeypatch.setattr(report_codes, "map_figure", lambda xy, labels, names, marks, plt, title: maps.append(
        dict(marks)) or rings.update(marks) or real(xy, labels, names, marks, plt, title))
    out = tmp_path / "out"
    text = build_report(copy_of, out).read_text(encoding="utf-8")
    (record,) = [a for a in load_audits(copy_of)]
    section = text.split("<h2>Audit: duplicates, likely wrong labels, outliers</h2>")[1]
    assert f"{record['counts']['duplicate']} duplicate pairs" in section
    for kind in ("duplicate", "label", "outlier"):
        assert (out / f"audit-{Path(record['path']).name}-{kind}.png").exists()
    test = FeatureStore.open(copy_of).rows("test")
    for kind in ("duplicate", "label", "outlier"):  # every flagged test image ringed, both of a pair
        rows = {row for r in record["rows"] if r["kind"] == kind for row in (r["row"], r.get("other_row"))
                if row is not None and test.start <= row < test.stop}
        assert set(np.flatnonzero(rings.get(f"audit: {kind}", []))) == {row - test.start for row in rows}
    assert rings["audit: duplicate"].any()  # the planted copies across splits
    (Path(record["path"]) / "audit.csv").write_text("changed")  # a damaged audit is named, never shown
    text = build_report(copy_of, out).read_text(encoding="utf-8")
    assert "left out" in text.split("<h2>Audit")[1] and "duplicate pairs" not in text.split("<h2>Audit")[1]
    assert len(maps) == 2 and maps[1] == {}  # the map drawn again, with no ring from the damaged audit


def test_a_long_joins_audit_folder_is_a_short_name_told_apart_by_a_hash(tmp_path):
    from cnncodes.features import schema

    long_a, long_b = "a" * 150 + "+" + "b" * 150, "a" * 150 + "+" + "c" * 150
    folder = schema.audit_dir(tmp_path, long_a)
    assert len(folder.name) == 100 and folder != schema.audit_dir(tmp_path, long_b)
    assert schema.audit_dir(tmp_path, "pixels").name == "pixels"


def test_an_audit_of_a_join_is_current_while_its_parts_are(copy_of):
    write_pixel_codes(copy_of, name="again")
    record = run_audit(copy_of, features="pixels+again", progress=False)
    (saved,) = [a for a in load_audits(copy_of) if a["features"] == "pixels+again"]
    assert saved["stale"] is None and saved["counts"] == record["counts"]
