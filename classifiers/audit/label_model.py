"""Which features judge the labels: the label check is only as good as the probabilities it is given, so it
uses the strongest features the store holds, not the set whose duplicates are searched."""
from cnncodes.classifiers.evaluation.sweep import default_candidates, sweeps
from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore


def label_features(store: FeatureStore, label: str, given: str | None = None) -> dict:
    """{"features", "why"}: `given` when named; else the choice of this label set's sweep (of those whose chosen
    set is still current, the one whose choice scored best by k-fold on the training split); else every complete
    set of the store joined (the cuts of one pass, and of several backbones, together beat any one:
    bench/RESULTS.md)."""
    if given:
        return {"features": store.feature_set(given).name, "why": "named with --label-features"}
    best_first = sorted(sweeps(store.path), key=lambda r: -max([c.get("mean", 0) for c in r.get("candidates", [])]
                                                                + [0]))
    for record in best_first:
        if record.get("label") != label:
            continue
        try:
            info = store.feature_set(str(record.get("chosen")))
        except UserError:
            continue  # its chosen set is gone or changed since
        return {"features": info.name, "why": f"the choice of the sweep with {record.get('head')} over "
                                              f"{len(record.get('candidates', []))} candidates"}
    singles = [name for name in default_candidates(store) if "+" not in name]
    if not singles:
        raise UserError(f"{store.path} has no complete feature sets: run `cnncodes features` first")
    return {"features": store.feature_set("+".join(singles)).name if len(singles) > 1 else singles[0],
            "why": "every complete set joined" if len(singles) > 1 else "the store's only complete set"}
