"""`cnncodes sweep`: which feature set makes the best head, chosen on the training split alone.

Every candidate (a stored set, or sets joined as `A+B`) is scored by k-fold cross-validation over the
training rows, through `kfold_scores`, whose finished folds are kept: a rerun with one more candidate
computes only that one. The best mean wins; the head is then fitted on the winner's whole training
split and the test split is scored once, for the winner alone. Test accuracy never ranks anything.
"""
import hashlib
import sys
import time
from pathlib import Path

from cnncodes.classifiers.heads.params import resolve_params
from cnncodes.classifiers.heads.registry import HEADS
from cnncodes.classifiers.runs.records import folder_part
from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.feature_sets import FeatureSetInfo
from cnncodes.features.outputs import write_atomically
from cnncodes.features.provenance import code_version
from cnncodes.features.sealed import SealBroken, read_sealed, write_sealed
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.console import printable

from .fit import fit_head
from .kfold import kfold_scores


def default_candidates(store: FeatureStore) -> list[str]:
    """Every complete set of this data (layers, backbones, sizes, views), and, for each extraction pass that
    cut several layers, all its cuts joined, in the order the store lists them."""
    sets = [s for s in store.feature_sets() if s.complete and not s.damaged and not store.stale(s)]
    passes = {frozenset([s.name, *s.extra.get("extracted_with", [])]) for s in sets if s.extra.get("extracted_with")}
    names = [s.name for s in sets]
    joined = ["+".join(n for n in names if n in together) for together in passes]
    return names + sorted(j for j in joined if "+" in j)


def print_to_stderr(message: str):
    print(printable(message), file=sys.stderr)


def left_out_sets(store: FeatureStore) -> list[dict]:
    """The stored sets `default_candidates` does not offer, each with why: still incomplete, damaged, or made from
    other data (stale)."""
    out = []
    for s in store.feature_sets():
        why = (f"damaged ({s.damaged})" if s.damaged else f"incomplete ({s.done}/{s.n} rows)" if not s.complete
               else store.stale(s))
        if why:
            out.append({"features": s.name, "why": why})
    return out


def extraction_seconds(stored: dict[str, FeatureSetInfo], info: FeatureSetInfo) -> float:
    """What the codes cost to extract: a pass several cuts shared is counted once. `stored`: the store's sets
    by name."""
    passes = {}
    for part in info.parts or [info.name]:
        s = stored[part]
        passes[frozenset([s.name, *s.extra.get("extracted_with", [])])] = s.seconds
    return sum(passes.values())


def sweep(store_dir, head: str, *, features: list[str] | None = None, k: int = 5, label: str | None = None,
          params: dict | None = None, epochs: int | None = None, scheduler: str | None = None, workers: int = 1,
          progress: bool = True, log=None, views: bool = True) -> dict:
    """Ranks the candidate feature sets by `head`'s k-fold mean on the training split, fits `head` on the
    best one's training split and scores its test split once. Returns (and saves) the sweep record.
    With `views` (the default), a set with cached augmented views is scored, and fitted, trained on them."""
    if head not in HEADS:
        raise UserError(f"sweep ranks feature sets for a head on codes: use one of {', '.join(HEADS)}, not {head!r}")
    head_params = resolve_params([head], params or {}, epochs)[head]
    store = FeatureStore.open(store_dir)
    label = store.canonical_label_set(label)
    given = list(dict.fromkeys(features or [])) or default_candidates(store)
    left_out = [] if features else left_out_sets(store)  # named sets are checked below, each refused in one line
    for s in left_out:
        (log or print_to_stderr)(f"sweep: {s['features']} left out: {s['why']}")
    if not given:
        raise UserError(f"{store.path} has no complete feature sets to compare: run `cnncodes features` first")
    infos = {}
    for name in given:  # every name checked before any fold is computed
        info = store.feature_set(name)
        infos.setdefault(info.name, info)
    stored = {s.name: s for s in store.feature_sets()}
    rows = []
    for name, info in infos.items():
        table = kfold_scores(store.path, [head], [label], k=k, features=name, params={head: head_params},
                             scheduler=scheduler, workers=workers, progress=progress, log=log, views=views)
        row = next((r for r in table["rows"] if r["head"] == head and r["label"] == label
                    and r["settings"] == head_params), None)
        if row is None:  # kfold said why: its folds were computed by other code
            raise UserError(f"sweep: {name}'s folds were not all computed by this cnncodes; run the sweep again")
        rows.append({"features": name, "views": table["views"], "dims": info.pooled_shape[1],
                     "mean": row["mean"], "std": row["std"],
                     "folds": row["folds"], "extraction_seconds": round(extraction_seconds(stored, info), 1),
                     "fit_seconds": round(row["seconds"] / k, 2), "chosen": row["chosen"]})
    rows.sort(key=lambda r: (-r["mean"], r["extraction_seconds"] + r["fit_seconds"]))  # ties: the cheaper
    best = rows[0]["features"]
    start = time.time()
    run, record = fit_head(store.path, head, features=best, label=label, params=head_params, views=views)
    result = {"kind": "sweep", "head": head, "label": label, "k": k, "params": record["params"],
              "candidates": rows, "left_out": left_out, "chosen": best, "run": Path(run).name,
              "test_accuracy": record["test_accuracy"], "train_accuracy": record["train_accuracy"],
              "final_fit_seconds": round(time.time() - start, 1), "code": code_version()}
    # a sweep of other candidates (or without views) has its own folder
    listed = hashlib.sha256(("\n".join(infos) + ("" if views else "\nno views")).encode()).hexdigest()[:8]
    folder = Path(store.path) / schema.RUNS_DIR / f"sweep-{folder_part(head)}-{folder_part(label)}-k{k}-{listed}"
    folder.mkdir(parents=True, exist_ok=True)
    write_sealed(folder / "sweep.json", result)
    write_atomically(folder / "sweep.md", format_sweep(result))
    return {**result, "path": str(folder / "sweep.md")}


def format_sweep(result: dict) -> str:
    """The ranking as Markdown, the test figure apart: it was not used to choose."""
    lines = [printable(f"{result['head']} on each feature set, {result['k']}-fold cross-validation on the training "
                       f"split ({result['label']})"), "",
             "| rank | features | views | dims | k-fold mean ± std % | extraction s | fit s (a fold) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(result["candidates"], 1):
        name = f"**{r['features']}**" if r["features"] == result["chosen"] else r["features"]
        lines.append(printable(f"| {i} | {name} | {r.get('views') or '-'} | {r['dims']} | "
                               f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} | "
                               f"{r['extraction_seconds']:.0f} | {r['fit_seconds']:.1f} |"))
    if result.get("left_out"):
        lines += ["", *(printable(f"left out: {s['features']}: {s['why']}") for s in result["left_out"])]
    lines += ["", printable(f"chosen on the training split: {result['chosen']}; {result['head']} fitted on its whole "
                            f"training split (run {result['run']})"),
              f"test accuracy, scored once for the chosen set only: {100 * result['test_accuracy']:.2f}%"]
    return "\n".join(lines) + "\n"


def sweeps(store) -> list[dict]:
    """Every sweep record under the store's runs, for `report`."""
    out = []
    for path in sorted((Path(store) / schema.RUNS_DIR).glob("sweep-*/sweep.json")):
        try:
            out.append(read_sealed(path))
        except SealBroken:
            continue
    return out
