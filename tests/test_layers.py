"""Several cuts from one forward pass, each its own feature set; sets read side by side as `A+B`."""
import numpy as np
import pytest

from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features, extract_layers
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import run_cli

quiet = dict(progress=False, log=lambda m: None)
CUTS = ["block6a_expand_activation", "block7a_project_bn", None]  # None: the last layer


def lite_store(path):
    ingest(path, IngestConfig("digits", limit=12), **quiet)
    return path


@pytest.mark.parametrize("spatial, flip", [(False, False), (True, True)])
def test_one_pass_over_several_layers_gives_the_sets_single_layer_runs_give(tmp_path, spatial, flip):
    config = FeatureConfig("efficientnet_lite0", "none", 32, spatial=spatial, flip_average=flip, seed=3)
    together = extract_layers(lite_store(tmp_path / "one-pass"), config, CUTS, chunk_size=10, **quiet)
    alone_store = lite_store(tmp_path / "alone")
    joint, alone = FeatureStore.open(tmp_path / "one-pass"), FeatureStore.open(alone_store)
    for layer, result in zip(CUTS, together):
        single = extract_features(alone_store, FeatureConfig("efficientnet_lite0", "none", 32, layer, spatial,
                                                             seed=3, flip_average=flip), chunk_size=10, **quiet)
        assert result.name == single.name and result.status == "extracted"
        assert joint.feature_set(result.name).fingerprint == alone.feature_set(single.name).fingerprint
        kinds = ["pooled", "spatial"] if spatial else ["pooled"]
        for kind in kinds:
            a, b = joint.features(result.name, kind=kind), alone.features(single.name, kind=kind)
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        # a one-layer run of a set the pass made has nothing to do
        again = extract_features(tmp_path / "one-pass", FeatureConfig("efficientnet_lite0", "none", 32, layer, spatial,
                                                                      seed=3, flip_average=flip), **quiet)
        assert again.status == "cached"
    assert len({joint.feature_set(r.name).pooled_shape[1] for r in together}) == len(CUTS)


def test_a_pass_computes_only_the_cuts_not_yet_stored_and_names_them_from_name(tmp_path):
    store = lite_store(tmp_path / "s")
    config = FeatureConfig("efficientnet_lite0", "none", 32)
    first = extract_layers(store, config, ["block6a_expand_activation"], name="lite", **quiet)
    assert [r.name for r in first] == ["lite"]  # one layer: the name as given
    said = []
    both = extract_layers(store, config, ["block6a_expand_activation", "top_activation"], name="cuts",
                          progress=False, log=said.append)
    assert [r.name for r in both] == ["cuts-block6a_expand_activation", "cuts-top_activation"]
    plain = extract_layers(store, config, ["block6a_expand_activation", "top_activation"], **quiet)
    assert [r.status for r in plain] == ["extracted", "extracted"]
    again = extract_layers(store, config, ["top_activation", "block6a_expand_activation"], **quiet)
    assert [r.status for r in again] == ["cached", "cached"]
    info = FeatureStore.open(store).feature_set(plain[1].name)
    assert info.extra["extracted_with"] == [plain[0].name]  # its cost was a pass it shared


@pytest.mark.parametrize("layers, says", [([], "names no layer"), (["top_activation", "top_activation"], "twice"),
                                          (["top_activation", "no_such_layer"], "no layer 'no_such_layer'")])
def test_a_bad_list_of_layers_is_one_line_and_stores_nothing(tmp_path, layers, says):
    store = lite_store(tmp_path / "s")
    with pytest.raises(UserError, match=says):
        extract_layers(store, FeatureConfig("efficientnet_lite0", "none", 32), layers, **quiet)
    assert FeatureStore.open(store).feature_sets() == []


def test_layers_marks_block_outputs():
    result = run_cli("layers", "efficientnet_lite0", "--size", "32")
    assert result.returncode == 0, result.stderr
    marked = {line.split("\t")[0] for line in result.stdout.splitlines() if line.endswith("\tblock output")}
    assert {"block2b_add", "block6d_add", "block7a_project_bn", "top_activation"} <= marked
    # inside a block, or one branch of a residual block: not a place that keeps a whole representation
    assert not marked & {"block6b_expand_conv", "block6b_project_bn", "block6a_expand_activation", "images"}


def test_block_outputs_of_every_family():
    from cnncodes.pipeline.backbones import block_outputs, build_backbone

    resnet = block_outputs(build_backbone("resnet50", "none", 32))
    assert {"conv2_block3_out", "conv4_block6_out", "conv5_block3_out"} <= resnet
    assert not any("_1_conv" in n or n.endswith("_add") for n in resnet)  # a block's branch or its sum before ReLU
    assert block_outputs(build_backbone("vgg16", "none", 32)) == {f"block{i}_pool" for i in range(1, 6)}


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    store = lite_store(tmp_path_factory.mktemp("joined") / "s")
    extract_layers(store, FeatureConfig("efficientnet_lite0", "none", 32), ["block6a_expand_activation", None],
                   name="lite", **quiet)
    return store


def test_a_concatenation_reads_the_sets_side_by_side_row_for_row(two_sets):
    store = FeatureStore.open(two_sets)
    a, b = store.features("lite-block6a_expand_activation", split="train"), store.features("lite-last", split="train")
    joined = store.features("LITE-last+lite-block6a_expand_activation", split="train")  # names in any case
    np.testing.assert_array_equal(joined, np.hstack([b, a]))
    lazy = store.features("lite-last+lite-block6a_expand_activation", split="test", lazy=True)
    np.testing.assert_array_equal(lazy.compute(), np.hstack([store.features("lite-last", split="test"),
                                                              store.features("lite-block6a_expand_activation",
                                                                             split="test")]))
    info = store.feature_set("lite-last+lite-block6a_expand_activation")
    assert info.parts == ["lite-last", "lite-block6a_expand_activation"]
    assert info.pooled_shape == (store.n, a.shape[1] + b.shape[1])
    assert info.fingerprint != store.feature_set("lite-last").fingerprint
    assert len(list((two_sets / "features").glob("*.h5"))) == 2  # nothing written


def test_fit_and_export_read_a_concatenation(two_sets, tmp_path):
    from cnncodes.classifiers.evaluation.fit import fit_head
    from cnncodes.features.export import export_feature_set

    _, record = fit_head(two_sets, "logreg", features="lite-last+lite-block6a_expand_activation")
    assert record["features"] == "lite-last+lite-block6a_expand_activation"
    assert [p["layer"] for p in record["feature_config"]["parts"]] == [None, "block6a_expand_activation"]
    out = export_feature_set(two_sets, tmp_path / "codes.npz", "lite-last+lite-block6a_expand_activation")
    with np.load(out) as z:
        store = FeatureStore.open(two_sets)
        np.testing.assert_array_equal(z["codes"], store.features("lite-last+lite-block6a_expand_activation"))


@pytest.mark.parametrize("name, says", [("lite-last+", "empty part"), ("+lite-last", "empty part"),
                                        ("lite-last+nosuch", "no feature set 'nosuch'"),
                                        ("lite-last+LITE-LAST", "twice")])
def test_a_bad_concatenation_is_one_line(two_sets, name, says):
    with pytest.raises(UserError, match=says):
        FeatureStore.open(two_sets).features(name)


def test_a_concatenation_has_no_spatial_maps(two_sets):
    with pytest.raises(UserError, match="spatial maps are read from one set"):
        FeatureStore.open(two_sets).features("lite-last+lite-block6a_expand_activation", kind="spatial")


def test_predict_with_a_head_fitted_on_a_concatenation_gives_the_scores_of_its_stored_codes(two_sets, tmp_path):
    import cv2

    from cnncodes.classifiers.evaluation.fit import fit_head
    from cnncodes.classifiers.runs.records import load_run
    from cnncodes.classifiers.serving.predict import predict_scored

    joined = "lite-last+lite-block6a_expand_activation"
    run, _ = fit_head(two_sets, "logreg", features=joined)
    store = FeatureStore.open(two_sets)
    images = store.images(split="test")[:4]
    paths = []
    for i, image in enumerate(images):  # PNG: the stored pixels, exactly
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), image[..., ::-1])
    _, top = predict_scored(run, paths, top=1)
    _, head = load_run(run)
    expected = head.predict_proba(store.features(joined, split="test")[:4])
    names = store.class_names()
    for (name, score), row in zip((t[0] for t in top), expected):
        assert name == names[int(head.classes_[row.argmax()])]
        assert score == pytest.approx(row.max(), rel=1e-4)
