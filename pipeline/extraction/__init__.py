"""Extraction: the streaming extractor that runs a frozen backbone over the store's images, chunk by chunk."""
