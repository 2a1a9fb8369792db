"""cnncodes: transfer learning with cached CNN codes. Extract once into an HDF5 feature store, then
fit heads, run k-fold evaluation and report from the cache.

The repository root is this package: `pipeline/`, `features/`, `classifiers/` and `cli.py` install
as `cnncodes.pipeline`, `cnncodes.features`, `cnncodes.classifiers` and `cnncodes.cli`, so no
generic top-level name is claimed in a user's environment.
"""
__version__ = "0.3.0"
