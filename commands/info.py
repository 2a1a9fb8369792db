"""`cnncodes info`: what a store holds, and with --check whether every stored byte is sound."""
import json
import sys
from pathlib import Path

import click

from cnncodes.features.errors import UserError
from cnncodes.options import PathType, store_option
from cnncodes.pipeline.console import printable


@click.command()
@store_option(required=False)
@click.argument("store_argument", metavar="[STORE]", required=False, type=PathType())
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--check", is_flag=True, help="read every stored byte once and report each file as sound or damaged")
def info(store, store_argument, as_json, check):
    """What a store holds: data, splits, label sets, folds, feature sets."""
    from cnncodes.features.feature_sets import STALE
    from cnncodes.features.store import FeatureStore

    given = click.get_current_context().get_parameter_source("store") == click.core.ParameterSource.COMMANDLINE
    if store_argument and given and Path(store) != store_argument:  # $CNNCODES_STORE yields to the argument
        raise UserError(f"two stores given, {store_argument} and --store {store}: give one")
    store = store_argument or store  # `info STORE` as before, or --store like every other command
    if store is None:
        raise UserError("which store? give --store DIR (or set CNNCODES_STORE)")
    opened = FeatureStore.open(store)
    s = opened.summary()
    if check:
        s["check"] = opened.check()
    if as_json:
        click.echo(json.dumps(s, indent=2))
    else:
        click.echo(format_info(s))
    if check and any(why and not why.startswith(STALE) for why in s["check"].values()):
        sys.exit(1)  # damaged or not verifiable; a stale set is sound, and rebuilt when asked for


def format_info(s: dict) -> str:
    """The summary as text; every name in it comes from data, so each is escaped for the terminal."""
    p = printable
    lines = [f"store     {p(s['store'])}", f"dataset   {p(s['dataset'])}  ({p(s['source'])})",
             f"images    {s['images']['count']} x {tuple(s['images']['shape'])} uint8, "
             + ", ".join(f"{k} {v}" for k, v in s["splits"].items())
             + (f", {s['skipped']} skipped" if s["skipped"] else ""),
             "labels    " + ", ".join(f"{p(k)} ({v} classes)" for k, v in s["label_sets"].items()),
             "folds     " + (", ".join(map(p, s["folds"]))
                             or "none kept yet (kfold computes any k when first asked for)"),
             "sources   " + ("recorded per row" if s["sources"]
                             else "not recorded (store made before cnncodes recorded them)"),
             f"features  {len(s['feature_sets'])}"]
    for f in s["feature_sets"]:
        if f.get("damaged"):
            lines.append(f"  {p(f['name'])}: DAMAGED ({p(f['damaged'])}): re-run `cnncodes features` with its options "
                         f"to rebuild it")
            continue
        if f.get("stale"):  # made from other data than data.h5 holds now: never read as this data's codes
            lines.append(f"  {p(f['name'])}: STALE ({p(f['stale'])}): re-run `cnncodes features` with its options to "
                         f"rebuild it")
            continue
        state = "complete" if f["complete"] else f"INCOMPLETE {f['rows']}"
        lines.append(f"  {p(f['name'])}: {tuple(f['shape'])} {f['dtype']}"
                     + (f" + spatial {tuple(f['spatial_shape'])}" if f["spatial_shape"] else "")
                     + (f" + {f['views']} views" if f.get("views") else "")
                     + f", {state}, {f['seconds']:.1f}s, fingerprint {f['fingerprint'][:12]}")
    if "check" in s:
        lines.append("check")
        for name, why in s["check"].items():
            # made before checksums covered it: not damaged, but not vouched for either (and so exit 1)
            unverified = bool(why) and why.startswith("not verifiable")
            stale = bool(why) and why.startswith("stale:")
            verdict = ("sound" if not why else "NOT VERIFIABLE" + why[14:] if unverified else
                       f"sound but STALE ({why[7:]})" if stale else f"DAMAGED ({why})")
            lines.append(f"  {p(name)}: {p(verdict)}")
    return "\n".join(lines)
