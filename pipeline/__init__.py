"""The stages: data sources, ingest into the store, the backbone registry and the streaming extractor."""
