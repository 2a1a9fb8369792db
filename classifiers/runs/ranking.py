"""Runs grouped by configuration and ranked without looking at the test set.

A run is what `fit` or `baseline` made and scored on the test split. Repeating a command makes
another run of the same configuration (head, features, label set, parameters): a configuration
shows its latest run, never its best test accuracy, which would be choosing on the test set. A
ranking uses the latest run's validation accuracy (the head's own holdout at the hyperparameters it
chose), or where it has none the k-fold mean of the same configuration; test accuracy is shown beside
and chooses nothing. Used by both `cnncodes runs` and `cnncodes report`.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

# the label set has its own column; fold records are not runs, so k (the folds') means nothing in a run
NOT_SETTINGS = ("label", "fold", "k", "verbose")


def is_run(record: dict) -> bool:
    """A fit or baseline on the test split; a baseline trained on one fold of a `kfold` belongs to its table."""
    return record.get("kind") in ("fit", "baseline") and params_of(record).get("fold") is None


def params_of(record: dict) -> dict:
    params = record.get("params")
    return params if isinstance(params, dict) else {}


def configuration_key(record: dict) -> str:
    """A head fitted on a feature set's spatial maps, or trained on its views, is another configuration than
    on its pooled codes alone."""
    return json.dumps([record.get(k) for k in ("kind", "head", "features", "fingerprint", "label")]
                      + [bool(record.get("spatial")), params_of(record)]
                      + ([views] if (views := record.get("views")) else []), sort_keys=True, default=str)


def features_text(record: dict) -> str:
    """The feature set a run learnt from, and whether from its spatial maps (else its pooled codes) or its views."""
    return (str(record.get("features")) + (" (spatial maps)" if record.get("spatial") else "")
            + (f" (+ {record['views']} views)" if record.get("views") else "")
            + (" [stale]" if record.get("stale") else ""))


def created_order(record: dict):
    """`created` has whole seconds; run folders made in the same second are numbered after it."""
    return str(record.get("created", "")), Path(str(record.get("run", ""))).name


def number(value) -> float | None:
    """A record's optional number, or None when it is absent, null, not a number or NaN."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        return None
    return float(value)


@dataclass
class Configuration:
    runs: list[dict]                                   # oldest first
    cross_validated: list[dict] = field(default_factory=list)  # {"k", "on", "mean", "std"} per matching table
    settings: dict = field(default_factory=dict)       # the parameters that set it apart from its head's others

    @property
    def latest(self) -> dict:
        return self.runs[-1]

    @property
    def validation_accuracy(self) -> float | None:
        return number(self.latest.get("validation_accuracy"))

    @property
    def ranking_score(self) -> float | None:
        if self.validation_accuracy is not None:
            return self.validation_accuracy
        return number(self.cross_validated[0]["mean"]) if self.cross_validated else None

    @property
    def ranked_by(self) -> str:
        if self.validation_accuracy is not None:
            return "validation"
        return "k-fold mean" if self.cross_validated else "unranked"


def configurations(records: list[dict], tables: list[dict] = ()) -> list[Configuration]:
    """The runs among `records`, one Configuration each, best ranking score first; those without a
    score last, newest first."""
    groups: dict[str, list[dict]] = {}
    for r in sorted(filter(is_run, records), key=created_order):
        groups.setdefault(configuration_key(r), []).append(r)
    found = [Configuration(runs, cross_validated_scores(runs[-1], tables)) for runs in groups.values()]
    set_distinguishing_settings(found)
    found.sort(key=lambda c: created_order(c.latest), reverse=True)
    return sorted(found, key=lambda c: (c.ranking_score is None, -(c.ranking_score or 0.0)))


def cross_validated_scores(run: dict, tables: list[dict]) -> list[dict]:
    """The k-fold rows of the same configuration: head, features, label set and parameters, computed by the
    code that made the run. A score of other settings (another C, probability=true), or of other code, would
    pass for this run's."""
    return [{"k": t["k"], "on": t["on"], "mean": row["mean"], "std": row["std"]}
            for t in tables if same_features(run, t) and source_of(run) == source_of(t)
            for row in t["rows"] if row["head"] == run.get("head") and row["label"] == run.get("label")
            and same_params(params_of(run), row.get("params"))]


def source_of(record: dict) -> str | None:
    """The source hash of the code that made a run or table (None for records that kept none)."""
    code = record.get("code")
    return code.get("source_sha256") if isinstance(code, dict) else None


def same_features(run: dict, table: dict) -> bool:
    if run.get("spatial"):  # k-fold runs on the pooled codes
        return False
    if run.get("kind") == "baseline":  # pixel baselines' tables are on "pixels", their runs on "pixels 32px"
        return table["features"] == "pixels"
    if (run.get("views") or 0) != (table.get("views") or 0):  # trained on views, or not: other figures
        return False
    both = run.get("fingerprint") and table.get("fingerprint")
    return table["features"] == run.get("features") and (not both or run["fingerprint"] == table["fingerprint"])


def same_params(run_params: dict, row_params) -> bool:
    """Both with every parameter, defaults included. Rows of tables written before rows kept their
    parameters have none: their settings are unknown, so they match no run."""
    if not isinstance(row_params, dict):
        return False
    return comparable(run_params) == comparable(row_params)


def comparable(params: dict):
    """As JSON reads them back (tuples as lists; 1 == 1.0), without what is not a setting."""
    return json.loads(json.dumps({k: v for k, v in params.items() if k not in NOT_SETTINGS}, default=str))


def set_distinguishing_settings(found: list[Configuration]):
    """Parameters that differ between configurations of one head: the column that tells them apart."""
    by_head: dict[str, list[Configuration]] = {}
    for c in found:
        by_head.setdefault(str(c.latest.get("head")), []).append(c)
    for group in by_head.values():
        params = [params_of(c.latest) for c in group]
        keys = sorted({k for p in params for k in p} - set(NOT_SETTINGS))
        differing = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True, default=str) for p in params}) > 1]
        for c, p in zip(group, params):
            c.settings = {k: p.get(k) for k in differing}


def ranked_runs(records: list[dict], tables: list[dict] = (), every: bool = False) -> list[dict]:
    """Runs in ranking order: each configuration's latest, or (`every`) all its runs, newest first,
    each with `configuration_runs`, how many runs its configuration has."""
    ordered = []
    for c in configurations(records, tables):
        for r in reversed(c.runs) if every else [c.latest]:
            ordered.append({**r, "configuration_runs": len(c.runs)})
    return ordered


# -- how numbers and settings read in tables --------------------------------------------------------------------
def percent(value, missing: str = "–") -> str:
    x = number(value)
    return missing if x is None else f"{100 * x:.2f}"


def cross_validated_text(scores: list[dict], missing: str = "–") -> str:
    return "; ".join(f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} ({s['k']}-fold on {s['on']})"
                     for s in scores) or missing


def setting_text(value, items: int = 4) -> str:
    """A parameter's value, short: numbers to 4 significant digits, long lists cut."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(setting_text(v) for v in value[:items])
        return f"[{shown}{', …' if len(value) > items else ''}]"
    if isinstance(value, dict):
        return "{" + settings_text(value) + "}"
    return str(value)


def settings_text(settings) -> str:
    if not isinstance(settings, dict):
        return "" if settings is None else setting_text(settings)
    return ", ".join(f"{k}={setting_text(v)}" for k, v in settings.items())


def chosen_text(chosen) -> str:
    """{"C": [1, 1, 0.1]} as "C: 1, 1, 0.1", one value per fold ("–" where a fold did not record it)."""
    if not isinstance(chosen, dict) or not chosen:
        return "–"
    return "; ".join(f"{name}: " + ", ".join("–" if v is None else setting_text(v)
                                             for v in (values if isinstance(values, list) else [values]))
                     for name, values in chosen.items())


KFOLD_COLUMNS = ["head", "label set", "settings", "mean ± std (%)", "mean train accuracy (%)",
                 "chosen hyperparameters (per fold)", "fit time (s)"]


def kfold_cells(table: dict) -> tuple[list[str], list[list]]:
    """(header, rows) of a k-fold table, the fold columns after the settings: the one layout of table.md
    and the report."""
    header = KFOLD_COLUMNS[:3] + [f"fold {i} (%)" for i in range(table["k"])] + KFOLD_COLUMNS[3:]
    rows = [[r["head"], r["label"], "–" if "settings" not in r else settings_text(r["settings"]) or "defaults",
             *(percent(a) for a in r["folds"]), f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}",
             percent(r.get("train_accuracy")), chosen_text(r.get("chosen")), f"{r['seconds']:.1f}"]
            for r in table["rows"]]  # settings "–": a table from before rows kept them
    return header, rows
