"""What a setting may be at most, declared once: the command line's option ranges and the checks Python
callers meet are both read from here, so the two never disagree."""

MAX_IMAGE_SIDE = 1024  # ingest's square side and the device resize: 1024 already needs 20x the memory of 224
MAX_BATCH = 4096       # the most --batch-size auto tries: beyond it throughput stops growing and host memory runs out
MAX_CHUNK = 65536      # a chunk's images and codes are held in memory whole (2048 float32 a row: 512 MB)
MAX_SEED = 2**32 - 1   # what numpy's, scikit-learn's and Keras's seeding take, and an HDF5 attribute holds
MAX_VIEWS = 64         # views are stored beside the codes: 64 views of 50,000 rows of 1280 floats are 16 GB
