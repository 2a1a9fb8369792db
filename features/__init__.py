"""The feature store: on-disk schema, the only code that opens its HDF5 files, fingerprints, folds."""
