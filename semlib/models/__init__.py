"""The gamma-conditioned hierarchical VAE (docs/METHOD.md §4-5), in three files:

- :mod:`semlib.models.layers`  the gamma embedding, the AdaLN residual block, the latent block
- :mod:`semlib.models.vae`     the network: bottom-up encoder, top-down decoder, CompressAI's contract
- :mod:`semlib.models.zoo`     configurations, building, checkpoints (read, save, load), fingerprint

Every name is also importable from ``semlib.models`` itself, as before the split.
"""

from semlib.allocation import BLOCK, GAMMA_RANGE
from semlib.entropy import CODING_THREADS, SCALE_TABLE, coding_threads
from semlib.models.layers import (GAIN_SPAN, ChannelNorm, GammaEmbedding, LatentBlock, ResBlock, _patch_down,
                                  _PatchUp)
from semlib.models.vae import (LATENT_LIMIT, MAX_STRIDE, MIN_SYMBOLS, HierarchicalVAE, _bound_latent, _channels_last,
                               _check_input, _LazyEmbeddings)
from semlib.models.zoo import (_CONFIG_BOUNDS, _CONFIG_TUPLES, CHECKPOINT_FORMAT, CONFIGS, MAX_NAME, MAX_PARAMETERS,
                               SHIPPED_CHECKPOINT, TINY_REFERENCES, Config, _one_line, _resblock_parameters, build_model,
                               check_config_name, config_from_dict, count_parameters, estimate_parameters,
                               fingerprint, load_model, random_model, read_checkpoint, save_model,
                               tiny_references)

__all__ = [
    "BLOCK", "GAMMA_RANGE", "CODING_THREADS", "SCALE_TABLE", "coding_threads",
    "GAIN_SPAN", "ChannelNorm", "GammaEmbedding", "LatentBlock", "ResBlock",
    "LATENT_LIMIT", "MAX_STRIDE", "MIN_SYMBOLS", "HierarchicalVAE",
    "CHECKPOINT_FORMAT", "CONFIGS", "MAX_NAME", "MAX_PARAMETERS", "SHIPPED_CHECKPOINT", "Config", "build_model",
    "check_config_name", "config_from_dict", "count_parameters", "estimate_parameters", "fingerprint",
    "load_model", "random_model", "read_checkpoint", "save_model", "TINY_REFERENCES", "tiny_references",
    "_patch_down", "_PatchUp", "_bound_latent", "_channels_last", "_check_input", "_LazyEmbeddings",
    "_CONFIG_BOUNDS", "_CONFIG_TUPLES", "_one_line", "_resblock_parameters",
]
