"""Backbones: the registry (`registry.py`) and the modules that build each family of networks."""
from .registry import (
                       BACKBONES,
                       PRECISIONS,
                       Backbone,
                       block_outputs,
                       build_backbone,
                       canonical_weights,
                       check_backbone,
                       check_layer,
                       check_size,
                       checked_weights,
                       cut,
                       dtype_policy,
                       get_backbone,
                       layer_after,
                       make_preprocess_layer,
                       seeded_initialization,
)

__all__ = ["BACKBONES", "PRECISIONS", "Backbone", "block_outputs", "build_backbone", "canonical_weights",
           "check_backbone",
           "check_layer", "check_size", "checked_weights", "cut", "dtype_policy", "get_backbone", "layer_after",
           "make_preprocess_layer", "seeded_initialization"]
