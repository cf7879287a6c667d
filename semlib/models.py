"""The gamma-conditioned hierarchical ResNet VAE (docs/METHOD.md §4-5), after QRes-VAE / QARV.

Reading order, coarse to fine:

* ``x`` in [0, 1] is mapped to [-1, 1] (QARV's convention, so that gamma has QARV's units).
* **Bottom-up encoder**: a 4x4 patch embedding to stride /4, ConvNeXt-style residual
  blocks, and 2x2 patch merges down to /8, /16, /32, /64. The features at /8 ... /64
  feed the posteriors.
* **Top-down decoder**: a learned constant at /64, then at each scale /64, /32, /16, /8
  one or more *latent blocks*, plain residual blocks, and a 2x pixel-shuffle up; at /4
  residual blocks and a 4x pixel-shuffle back to the image.
* **Latent block** i (docs/METHOD.md §4): from the decoder state it predicts the prior
  ``p_i(z_i | z_<i, gamma)`` = N(mu_p, sigma_p) convolved with U(-1/2, 1/2); from the
  decoder state *and* the encoder feature it predicts the posterior mean mu_q; the
  posterior is U(mu_q - 1/2, mu_q + 1/2): uniform noise in training, rounding relative to
  the prior mean at test time, ``z_i = round(mu_q - mu_p) + mu_p``. Its likelihood under
  the prior is the rate; at test time the integer ``round(mu_q - mu_p)`` is entropy coded
  with compressai's ``GaussianConditional`` (rANS, a fixed table of scales).
* **Gamma conditioning** (docs/METHOD.md §5): log gamma, normalised over the training range, goes
  through a sinusoidal embedding and Linear-GELU-Linear; every residual and latent block
  (encoder and decoder, posterior and prior) turns it into a per-channel scale and shift
  applied after its normalisation (AdaLN). Gamma is a *map*, one value per 8x8 block,
  pooled (in the log domain) to each resolution and applied per position; a scalar gamma
  is the constant map.
* **Gain units**: each latent block multiplies its posterior mean and its prior's mean and
  scale by a per-channel gain g(gamma) and divides z by it on the way into the decoder, so
  the quantisation step is 1/g. g starts at the high-rate law g ~ sqrt(gamma), so the rate
  follows gamma from the first training step (AdaLN modulation alone, starting at zero, left
  the rate flat across gamma in short CPU runs), and is learned from the embedding after that.

Units of gamma (those of QARV, so the paper's gamma in [32, 2048] means what it meant
there): the loss is ``R + gamma * D`` with R the rate in **nats per sub-pixel** (nats
divided by 3*H*W) and D the **MSE of images scaled to [-1, 1]** (4x the MSE on [0, 1]).
CompressAI's lambda is about 2.66e-4 * gamma.

The model contract is CompressAI's: ``forward(x, gamma)`` returns the reconstruction and
the likelihoods of every latent; ``compress(x, gamma)`` returns one byte string per latent
block (per image) and the latent shape; ``decompress(strings, shape, gamma)`` takes them back.
The bitstream is only decodable by the same weights computing the same table indexes from
their priors: compress/decompress run in float32, in eval mode, on the CPU; compress also
returns the few symbols whose index another CPU or thread count could compute otherwise
(:mod:`semlib.entropy`), and decompress takes their indexes from it. Latent strings are
read back with a bounds-checked rANS decoder (:func:`semlib.entropy.rans_decode`), since
compressai's C++ one reads past the end of a corrupted string.
"""

from __future__ import annotations

import hashlib
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.entropy_models import GaussianConditional

from semlib import entropy
from semlib.entropy import SCALE_TABLE
from semlib.errors import CheckpointError

GAMMA_RANGE = (32.0, 2048.0)   # the training range of the paper (and QARV's upper end)
MAX_STRIDE = 64                 # images are padded to a multiple of this
BLOCK = 8                       # gamma maps have one value per BLOCK x BLOCK pixels
LATENT_LIMIT = 1 << 16          # |round(mu_q - mu_p)| is clipped to this before coding
MIN_SYMBOLS = 8                 # compressai's encoder overruns its buffer on strings of 1-3 symbols
GAIN_SPAN = math.log(GAMMA_RANGE[1] / GAMMA_RANGE[0])
CODING_THREADS = 1              # CPU threads of the coding passes of format version 1 files (see coding_threads)


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    """Sizes of one model, per scale. Encoder lists run fine to coarse (/4 ... /64),
    decoder lists coarse to fine (/64 ... /4); latent lists cover /64 ... /8."""

    name: str
    enc_widths: tuple[int, int, int, int, int]
    enc_blocks: tuple[int, int, int, int, int]
    dec_widths: tuple[int, int, int, int, int]
    dec_blocks: tuple[int, int, int, int, int]   # plain residual blocks after the latents
    latents: tuple[int, int, int, int]           # latent blocks at /64, /32, /16, /8
    z_dims: tuple[int, int, int, int]
    kernels: tuple[int, int, int, int, int]      # depthwise kernel at /4, /8, /16, /32, /64
    mlp_ratio: float = 2.0
    emb_dim: int = 64
    # 0: each latent block's log gain is learned freely from the gamma embedding (it starts at
    # the law below). > 0: log g = (1/2) log(gamma / sqrt(lo * hi)), the high-rate law, fixed,
    # plus a learned residual bounded to +-gain_residual nats (see LatentBlock.log_gain).
    gain_residual: float = 0.0


CONFIGS = {
    # For tests and quick notebooks: ~0.3 M parameters.
    "tiny": Config(
        "tiny",
        enc_widths=(24, 32, 48, 48, 48), enc_blocks=(1, 1, 1, 1, 1),
        dec_widths=(48, 48, 48, 32, 24), dec_blocks=(0, 0, 0, 0, 1),
        latents=(1, 1, 1, 1), z_dims=(8, 8, 16, 4),
        kernels=(5, 5, 3, 3, 1), mlp_ratio=2.0, emb_dim=32,
    ),
    # The model trained on a 2-core CPU and shipped with the project. Its depthwise kernels
    # are 3x3: on 2 CPU cores the backward pass of a 7x7 depthwise convolution at /4 took
    # 46 ms a call, over half of a training step; with 3x3 everywhere a step on 8x256x256
    # (bf16, channels-last) went from 0.73 s to 0.48 s. Depth still gives a wide field.
    "small": Config(
        "small",
        enc_widths=(64, 96, 128, 160, 160), enc_blocks=(2, 2, 2, 2, 1),
        dec_widths=(160, 160, 128, 96, 64), dec_blocks=(0, 1, 1, 1, 2),
        latents=(1, 2, 2, 2), z_dims=(16, 16, 48, 8),
        kernels=(3, 3, 3, 3, 1), mlp_ratio=2.0, emb_dim=96,
    ),
    # QARV-base size (Duan et al. 2023), for a GPU.
    "paper": Config(
        "paper",
        enc_widths=(192, 384, 512, 512, 512), enc_blocks=(6, 6, 6, 4, 4),
        dec_widths=(512, 512, 384, 256, 128), dec_blocks=(1, 2, 2, 2, 8),
        latents=(1, 2, 3, 3), z_dims=(32, 32, 96, 8),
        kernels=(7, 7, 5, 3, 1), mlp_ratio=3.0, emb_dim=256,
    ),
}


# --------------------------------------------------------------------------- building blocks


class GammaEmbedding(nn.Module):
    """log gamma -> normalised -> sinusoidal features -> Linear-GELU-Linear (per position).

    Input: a log-gamma map N x 1 x h x w (h = w = 1 for a scalar gamma). Output N x E x h x w:
    E - 1 learned features and, last, u = log gamma normalised to [0, 1] over the training range.
    The linear layers are 1x1 convolutions so that a gamma map is embedded per position.
    """

    def __init__(self, dim: int, n_freq: int = 16, gamma_range=GAMMA_RANGE):
        super().__init__()
        self.log_lo, self.log_hi = math.log(gamma_range[0]), math.log(gamma_range[1])
        self.register_buffer("freqs", math.pi * torch.arange(1, n_freq + 1).float(), persistent=False)
        self.mlp = nn.Sequential(nn.Conv2d(2 * n_freq + 1, dim, 1), nn.GELU(), nn.Conv2d(dim, dim - 1, 1))

    def forward(self, log_gamma: torch.Tensor) -> torch.Tensor:
        u = (log_gamma - self.log_lo) / (self.log_hi - self.log_lo)     # 0 .. 1 over the range
        angles = u * self.freqs.view(1, -1, 1, 1)
        # the last channel is u itself, so that layers can also depend on log gamma linearly
        return torch.cat([self.mlp(torch.cat([u, torch.sin(angles), torch.cos(angles)], dim=1)), u], dim=1)


class ChannelNorm(nn.Module):
    """LayerNorm over channels at every position, without affine parameters (AdaLN adds them)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), (self.dim,), eps=1e-6).permute(0, 3, 1, 2)


class ResBlock(nn.Module):
    """ConvNeXt-style residual block with gamma-dependent scale and shift (AdaLN):
    depthwise k x k conv -> channel norm -> (1 + s(gamma)) * h + b(gamma) -> 1x1 -> GELU -> 1x1."""

    def __init__(self, dim: int, emb_dim: int, kernel_size: int = 7, mlp_ratio: float = 2.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = ChannelNorm(dim)
        self.modulation = nn.Conv2d(emb_dim, 2 * dim, 1)
        self.pw1 = nn.Conv2d(dim, hidden, 1)
        self.pw2 = nn.Conv2d(hidden, dim, 1)
        self.layer_scale = nn.Parameter(torch.full((1, dim, 1, 1), 0.1))
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x, emb):
        scale, shift = self.modulation(emb).chunk(2, dim=1)
        h = self.norm(self.dw(x)) * (1 + scale) + shift
        h = self.pw2(F.gelu(self.pw1(h)))
        return x + self.layer_scale * h


class LatentBlock(nn.Module):
    """One latent variable z_i of the top-down path (docs/METHOD.md §4).

    prior     p_i(z_i | z_<i, gamma):    decoder state -> ResBlock -> 1x1 -> (mu_p, log sigma_p)
    posterior q_i(z_i | x, z_<i, gamma): [decoder state, encoder feature] -> 1x1 -> ResBlock -> 1x1 -> mu_q
    update:   state <- ResBlock(state + 1x1(z_i / g))

    Gain g(gamma) > 0, per channel and position: the posterior mean, the prior mean and the
    prior scale are multiplied by g, and z_i divided by it before it enters the decoder, so
    that the quantisation step in feature space is 1/g. It starts at the high-rate law
    g ~ sqrt(gamma) (step ~ sqrt(D) ~ 1/sqrt(gamma)), which makes the rate follow gamma from
    the first step, and is learned from the gamma embedding from there (a "gain unit").
    """

    def __init__(self, width, enc_width, z_dim, emb_dim, kernel_size, mlp_ratio, gain_residual: float = 0.0):
        super().__init__()
        self.z_dim = z_dim
        self.gain_residual = float(gain_residual)
        self.res_in = ResBlock(width, emb_dim, kernel_size, mlp_ratio)
        self.prior_res = ResBlock(width, emb_dim, kernel_size, mlp_ratio)
        self.prior_out = nn.Conv2d(width, 2 * z_dim, 1)
        self.post_merge = nn.Conv2d(width + enc_width, width, 1)
        self.post_res = ResBlock(width, emb_dim, kernel_size, mlp_ratio)
        self.post_out = nn.Conv2d(width, z_dim, 1)
        self.z_in = nn.Conv2d(z_dim, width, 1)
        self.res_out = ResBlock(width, emb_dim, kernel_size, mlp_ratio)
        self.gain = nn.Conv2d(emb_dim, z_dim, 1)
        with torch.no_grad():
            self.gain.weight.zero_()
            self.gain.bias.zero_()
            if not self.gain_residual:              # log g = (span / 2) * (u - 1/2) at the start
                self.gain.weight[:, -1] = 0.5 * GAIN_SPAN
                self.gain.bias.fill_(-0.25 * GAIN_SPAN)

    def log_gain(self, emb):
        """log g(gamma), per channel and position. With ``gain_residual`` r > 0 it is the law
        (span / 2) * (u - 1/2) = (1/2) log(gamma / sqrt(lo * hi)) (u: log gamma normalised to
        [0, 1] over GAMMA_RANGE, the embedding's last channel) plus r * tanh(learned / r): the
        ratio of the gains at the ends of the range stays within exp(+-2r) of the law's 8."""
        raw = self.gain(emb).float()
        if not self.gain_residual:
            return raw.clamp(-8.0, 8.0)
        law = 0.5 * GAIN_SPAN * (emb[:, -1:].float() - 0.5)
        return law + self.gain_residual * torch.tanh(raw / self.gain_residual)

    def prior(self, state, emb):
        """(mu_p, sigma_p) of the prior; in float32, since the coder depends on them."""
        mean, log_scale = self.prior_out(self.prior_res(state, emb)).float().chunk(2, dim=1)
        log_gain = self.log_gain(emb)
        return mean * torch.exp(log_gain), torch.exp(log_scale.clamp(-4.0, 6.0) + log_gain)

    def posterior_mean(self, state, enc_feature, emb):
        h = self.post_merge(torch.cat([state, enc_feature], dim=1))
        return self.post_out(self.post_res(h, emb)).float() * torch.exp(self.log_gain(emb))

    def update(self, state, z, emb):
        z = z * torch.exp(-self.log_gain(emb))
        return self.res_out(state + self.z_in(z.to(state.dtype)), emb)


def _patch_down(c_in, c_out):
    return nn.Conv2d(c_in, c_out, 2, stride=2)


class _PatchUp(nn.Sequential):
    def __init__(self, c_in, c_out, rate):
        super().__init__(nn.Conv2d(c_in, c_out * rate * rate, 1), nn.PixelShuffle(rate))


# --------------------------------------------------------------------------- the model


class HierarchicalVAE(nn.Module):
    """The gamma-conditioned hierarchical VAE. Build one with :func:`build_model`."""

    def __init__(self, config: Config):
        super().__init__()
        c = config
        self.config = c
        e = c.emb_dim
        self.embedding = GammaEmbedding(e)

        # bottom-up: stages at /4, /8, /16, /32, /64
        self.stem = nn.Conv2d(3, c.enc_widths[0], 4, stride=4)
        self.enc_stages = nn.ModuleList()
        self.enc_down = nn.ModuleList()
        for s in range(5):
            if s > 0:
                self.enc_down.append(_patch_down(c.enc_widths[s - 1], c.enc_widths[s]))
            self.enc_stages.append(nn.ModuleList(
                ResBlock(c.enc_widths[s], e, c.kernels[s], c.mlp_ratio) for _ in range(c.enc_blocks[s])))

        # top-down: scales /64, /32, /16, /8 with latents, then /4
        self.dec_bias = nn.Parameter(torch.zeros(1, c.dec_widths[0], 1, 1))
        self.dec_latents = nn.ModuleList()
        self.dec_stages = nn.ModuleList()
        self.dec_up = nn.ModuleList()
        for t in range(5):
            s = 4 - t                                      # encoder index of this scale
            w = c.dec_widths[t]
            if t < 4:
                self.dec_latents.append(nn.ModuleList(
                    LatentBlock(w, c.enc_widths[s], c.z_dims[t], e, c.kernels[s], c.mlp_ratio, c.gain_residual)
                    for _ in range(c.latents[t])))
            self.dec_stages.append(nn.ModuleList(
                ResBlock(w, e, c.kernels[s], c.mlp_ratio) for _ in range(c.dec_blocks[t])))
            if t < 4:
                self.dec_up.append(_PatchUp(w, c.dec_widths[t + 1], 2))
        self.head = _PatchUp(c.dec_widths[4], 3, 4)

        self.entropy = GaussianConditional(None)
        self.entropy.update_scale_table(SCALE_TABLE)
        # how training mode quantises the latents: "noise" (uniform noise for the decoder and
        # the rate) or "mixed" (rounding for the decoder, noise for the rate); not saved: it
        # changes how the model is trained, not what it computes at test time
        self.train_quantization = "noise"

    # ----------------------------------------------------------------- gamma handling

    @staticmethod
    def log_gamma_map(gamma, x: torch.Tensor) -> torch.Tensor:
        """Any gamma (a number, a tensor of N numbers, or a block map N x [1 x] H/8 x W/8)
        -> log-gamma map N x 1 x h x w at /8 (1 x 1 for scalars), float32."""
        n, _, height, width = x.shape
        g = torch.as_tensor(gamma, dtype=torch.float32, device=x.device)
        if not torch.isfinite(g).all() or (g <= 0).any():
            raise ValueError("gamma must be finite and > 0")
        if g.dim() == 0:
            g = g.expand(n)
        if g.dim() == 1:
            if g.numel() not in (1, n):
                raise ValueError(f"gamma has {g.numel()} values for a batch of {n}")
            return g.log().expand(n).reshape(n, 1, 1, 1).contiguous()
        if g.dim() == 2:
            g = g.unsqueeze(0)
        if g.dim() == 3:
            g = g.unsqueeze(1)
        expected = (height // BLOCK, width // BLOCK)
        if g.dim() != 4 or g.shape[1] != 1 or tuple(g.shape[-2:]) != expected:
            raise ValueError(f"gamma map of shape {tuple(g.shape)} does not fit an image of "
                             f"{height}x{width}: expected {expected[0]}x{expected[1]} blocks of {BLOCK}x{BLOCK}")
        return g.log().expand(n, 1, *expected).contiguous()

    def embeddings(self, log_gamma: torch.Tensor) -> list[torch.Tensor]:
        """Gamma embeddings at /4, /8, /16, /32, /64 (log gamma pooled to each resolution)."""
        if log_gamma.shape[-2:] == (1, 1):
            emb = self.embedding(log_gamma)
            return [emb] * 5
        return [self.embedding_at(log_gamma, s) for s in range(5)]

    def embedding_at(self, log_gamma: torch.Tensor, s: int) -> torch.Tensor:
        """The gamma embedding of scale s (0: /4, 1: /8, ... 4: /64) of a log-gamma map at /8."""
        if log_gamma.shape[-2:] == (1, 1):
            return self.embedding(log_gamma)
        if s == 0:
            m = F.interpolate(log_gamma, scale_factor=2, mode="nearest")
        elif s == 1:
            m = log_gamma
        else:
            m = F.avg_pool2d(log_gamma, 2 ** (s - 1))
        return self.embedding(m)

    # ----------------------------------------------------------------- the two paths

    def encode_features(self, x: torch.Tensor, embs) -> list[torch.Tensor]:
        """Bottom-up pass: features at /4, /8, /16, /32, /64."""
        h = self.stem(x * 2.0 - 1.0)
        feats = []
        for s, stage in enumerate(self.enc_stages):
            if s > 0:
                h = self.enc_down[s - 1](h)
            for block in stage:
                h = block(h, embs[s])
            feats.append(h)
        return feats

    def top_down(self, embs, shape, feats=None, mode="noise", strings=None, reconstruct: bool = True,
                 latents=None, record=None, coding=None):
        """Top-down pass. ``mode``: 'noise' (training), 'round' (test-time forward),
        a float tau (stochastic Gumbel annealing at temperature tau, see :func:`sga_round`: for
        encoder-side refinement), 'compress' (also entropy-codes each latent), 'decompress' (reads them from ``strings``).
        ``reconstruct=False`` stops after the last latent (x_hat is then None): the layers
        after it only build the image, which an encoder that returns bytes does not need.
        ``latents``: posterior means mu_q, one tensor per latent block, to use instead of the
        encoder's (``feats`` is then not read); ``record``: a list that receives the posterior
        means used, in coding order (:mod:`semlib.refine` optimises them). ``coding``: a dict
        for the side information of :mod:`semlib.entropy`: 'compress' fills ``sides`` (per
        latent, per image: the fragile symbols' positions and bits) and ``crc`` (per image: the
        CRC-32 of its symbols); 'decompress' reads ``sides`` (if given) and fills ``crc``.

        Returns (x_hat, likelihoods, strings)."""
        n, h64, w64 = shape
        state = self.dec_bias.expand(n, -1, h64, w64)
        fmt = torch.channels_last if _channels_last(self.stem.weight) else torch.contiguous_format
        state = state.contiguous(memory_format=fmt)
        likelihoods, out_strings = [], []
        tables = entropy.table_arrays(self.entropy) if mode == "decompress" else None
        if coding is not None:
            coding.setdefault("sides", [])
            coding["crc"] = [0] * n
        k = 0
        for t in range(5):
            s = 4 - t
            emb = embs[s]
            if t < 4:
                for block in self.dec_latents[t]:
                    state = block.res_in(state, emb)
                    mean, scale = block.prior(state, emb)
                    if mode == "decompress":
                        z = self._decode_latent(strings[k], k, scale, mean, tables, coding)
                    else:
                        mu = block.posterior_mean(state, feats[s], emb) if latents is None else latents[k]
                        if mode not in ("noise", "mixed"):
                            mu = _bound_latent(mu, mean, k, strict=mode == "compress")
                        if record is not None:
                            record.append(mu.detach())
                        if mode == "compress":
                            if mu[0].numel() < MIN_SYMBOLS:
                                raise ValueError(f"latent {k} has {mu[0].numel()} values per image; compressai's "
                                                 f"encoder needs at least {MIN_SYMBOLS} (widen z_dims)")
                            indexes = entropy.build_indexes(self.entropy, scale)
                            out_strings.append(self.entropy.compress(mu, indexes, means=mean))
                            if coding is not None:
                                self._record_coding(coding, mu, mean, scale, indexes)
                        if mode == "compress":          # the file needs z, not its likelihood
                            with torch.autocast(device_type=mu.device.type, enabled=False):
                                z = self.entropy.quantize(mu.float(), "dequantize", mean.float())
                        else:
                            z, lik = self._quantize(mu, scale, mean, mode)
                            likelihoods.append(lik)
                    state = block.update(state, z, emb)
                    k += 1
                if t == 3 and not reconstruct:
                    return None, likelihoods, out_strings
            for block in self.dec_stages[t]:
                state = block(state, emb)
            if t < 4:
                state = self.dec_up[t](state)
        x_hat = (self.head(state).float() + 1.0) / 2.0
        return x_hat, likelihoods, out_strings

    @staticmethod
    def _record_coding(coding, mu, mean, scale, indexes):
        """The encoder's side information of one latent: fragile symbols and symbol CRCs."""
        symbols = torch.round(mu - mean).int()            # what GaussianConditional.compress codes
        coding["sides"].append([entropy.fragile_sides(scale[i], indexes[i]) for i in range(len(mu))])
        for i in range(len(mu)):
            coding["crc"][i] = entropy.symbols_crc(symbols[i].reshape(-1), coding["crc"][i])

    def _decode_latent(self, strings, k, scale, mean, tables, coding=None):
        """z_k = symbols + mu_p, the symbols read from ``strings`` (one per image) with the
        bounds-checked :func:`semlib.entropy.rans_decode`; the table indexes of the fragile
        symbols come from ``coding['sides']`` when the file has them. ValueError names the
        latent that cannot be decoded."""
        indexes = entropy.build_indexes(self.entropy, scale)
        if len(strings) != indexes.shape[0]:
            raise ValueError(f"latent {k}: {len(strings)} strings for a batch of {indexes.shape[0]}")
        sides = coding.get("sides") if coding is not None else None
        symbols = []
        for i, string in enumerate(strings):
            idx = indexes[i]
            if sides:
                positions, bits = sides[k][i]
                idx = entropy.apply_sides(scale[i], idx, positions, bits)
            try:
                values = entropy.rans_decode(string, idx.reshape(-1).numpy(), tables)
            except ValueError as e:
                raise ValueError(f"latent string {k} does not decode: {e}") from None
            if coding is not None:
                coding["crc"][i] = entropy.symbols_crc(values, coding["crc"][i])
            symbols.append(torch.from_numpy(values))
        q = torch.stack(symbols).to(device=mean.device, dtype=torch.float32).reshape(mean.shape)
        if q.abs().max() > LATENT_LIMIT:
            raise ValueError(f"latent string {k} holds a value beyond +-{LATENT_LIMIT} (not written by semlib)")
        return q + mean

    def _quantize(self, mu, scale, mean, mode):
        """Uniform posterior: noise in training, rounding relative to the prior mean at test
        time; the likelihood under the discretised Gaussian prior (float32, no autocast)."""
        with torch.autocast(device_type=mu.device.type, enabled=False):
            if isinstance(mode, float):     # "sga" at temperature ``mode``
                z = mean.float() + sga_round(mu.float() - mean.float(), mode)
            elif mode == "mixed":           # training: the decoder sees the rounded value (straight
                # through), the rate is that of the noisy one (Minnen & Singh, ICIP 2020)
                z = mu.float() + (torch.round(mu.float() - mean.float()) + mean.float() - mu.float()).detach()
                noisy = self.entropy.quantize(mu.float(), "noise", mean.float())
                lik = self.entropy._likelihood(noisy, scale.float(), mean.float())
                return z, self.entropy.likelihood_lower_bound(lik)
            else:
                z = self.entropy.quantize(mu.float(), "noise" if mode == "noise" else "dequantize", mean.float())
            lik = self.entropy._likelihood(z, scale.float(), mean.float())
            lik = self.entropy.likelihood_lower_bound(lik)
        return z, lik

    # ----------------------------------------------------------------- the contract

    def forward(self, x: torch.Tensor, gamma) -> dict:
        """x: N x 3 x H x W in [0, 1], H and W multiples of 64. Returns {'x_hat', 'likelihoods'}.
        Training mode adds uniform noise to the latents; eval mode rounds them, and gives
        exactly the reconstruction of :meth:`compress` (on the same thread count)."""
        _check_input(x)
        n, _, height, width = x.shape
        shape = (n, height // MAX_STRIDE, width // MAX_STRIDE)
        if self.training:
            embs = self.embeddings(self.log_gamma_map(gamma, x))
            feats = self.encode_features(x, embs)
            x_hat, likelihoods, _ = self.top_down(embs, shape, feats, self.train_quantization)
        else:
            embs = self.embeddings(self.log_gamma_map(gamma, x))
            feats = self.encode_features(x, embs)
            x_hat, likelihoods, _ = self.top_down(embs, shape, feats, "round")
        return {"x_hat": x_hat, "likelihoods": {f"z{i}": l for i, l in enumerate(likelihoods)}}

    @torch.no_grad()
    def compress(self, x: torch.Tensor, gamma, reconstruct: bool = True, latents=None, threads=None) -> dict:
        """Entropy-code x. Returns {'strings': one list (over the batch) of bytes per latent
        block, 'shape': (H/64, W/64), 'x_hat': the reconstruction the decoder will produce
        (None with ``reconstruct=False``, which skips the layers after the last latent),
        'sides' and 'crc': the side information that makes the strings decodable on other
        CPUs (:mod:`semlib.entropy`)}.
        ``latents``: the posterior means to code instead of the encoder's (from
        :func:`semlib.refine.refine_latents`); the bottom-up pass is then skipped.
        ``threads``: run the passes the decoder repeats on this many threads (None: the
        caller's setting; see :func:`coding_threads`)."""
        _check_input(x)
        with coding_threads(x.device, threads):
            embs = self.embeddings(self.log_gamma_map(gamma, x))
        feats = self.encode_features(x.float(), embs) if latents is None else None
        n, _, height, width = x.shape
        shape = (height // MAX_STRIDE, width // MAX_STRIDE)
        coding = {}
        with coding_threads(x.device, threads):
            x_hat, _, strings = self.top_down(embs, (n, *shape), feats, "compress", reconstruct=reconstruct,
                                              latents=latents, coding=coding)
        return {"strings": strings, "shape": shape, "x_hat": None if x_hat is None else x_hat.clamp(0, 1),
                "sides": coding["sides"], "crc": coding["crc"]}

    @torch.no_grad()
    def decompress(self, strings, shape, gamma, sides=None, threads=None) -> dict:
        """Inverse of :meth:`compress`: ``strings`` is one list (over the batch) per latent
        block, ``sides`` the fragile symbols compress returned (None: compute every table
        index here, as files of format version 1 need). Returns {'x_hat', 'crc': the CRC-32 of
        each image's decoded symbols, to compare with the encoder's}.

        Raises ``ValueError`` for a string that cannot be decoded (see
        :func:`semlib.entropy.rans_decode`). The gamma
        embeddings of each scale are built only when the decoder reaches it, so a string
        that does not fit the claimed image size fails before the large maps exist."""
        if len(strings) != self.num_latents:
            raise ValueError(f"expected {self.num_latents} latent strings, got {len(strings)}")
        n = len(strings[0])
        h64, w64 = shape
        device = self.dec_bias.device
        # a stand-in of the image's shape for log_gamma_map, without memory behind it
        probe = torch.zeros((), device=device).expand(n, 3, h64 * MAX_STRIDE, w64 * MAX_STRIDE)
        if sides is not None and (len(sides) != self.num_latents or any(len(s) != n for s in sides)):
            raise ValueError(f"side information for {len(sides)} latents, expected {self.num_latents} of {n} images")
        coding = {"sides": sides}
        with coding_threads(device, threads):
            embs = _LazyEmbeddings(self, self.log_gamma_map(gamma, probe))
            x_hat, _, _ = self.top_down(embs, (n, h64, w64), mode="decompress", strings=strings, coding=coding)
        return {"x_hat": x_hat.clamp(0, 1), "crc": coding["crc"]}

    @property
    def num_latents(self) -> int:
        return sum(self.config.latents)


class _LazyEmbeddings:
    """``embs[s]`` of :meth:`HierarchicalVAE.embeddings`, each computed on first use."""

    def __init__(self, model: HierarchicalVAE, log_gamma: torch.Tensor):
        self.model, self.log_gamma, self.cache = model, log_gamma, {}

    def __getitem__(self, s: int) -> torch.Tensor:
        if s not in self.cache:
            self.cache[s] = self.model.embedding_at(self.log_gamma, s)
        return self.cache[s]


def sga_round(r: torch.Tensor, tau: float) -> torch.Tensor:
    """Stochastic Gumbel annealing (Yang, Bamler & Mandt, NeurIPS 2020): a differentiable
    stand-in for round(r). Each value goes to floor(r) or floor(r) + 1, softly, with a
    Gumbel-softmax sample at temperature ``tau`` whose logits -atanh(distance) / tau favour the
    nearer integer; as tau -> 0 it becomes rounding."""
    lo = torch.floor(r).detach()
    d = torch.stack([r - lo, lo + 1.0 - r]).clamp(1e-4, 1 - 1e-4)      # distances to lo, lo + 1
    logits = -torch.atanh(d) / tau
    w = F.gumbel_softmax(logits, tau=tau, hard=False, dim=0)
    return lo + w[1]


def _bound_latent(mu: torch.Tensor, mean: torch.Tensor, k: int, strict: bool) -> torch.Tensor:
    """Clip the posterior mean so that ``round(mu - mean)`` stays within +-LATENT_LIMIT
    (compressai's encoder loops without end on values near 2**30, and NaN becomes one).
    With ``strict`` (compress), non-finite values mean broken weights and raise ValueError."""
    if strict and not (torch.isfinite(mu).all() and torch.isfinite(mean).all()):
        raise ValueError(f"latent {k}: the model produced non-finite values (NaN or inf); are the weights broken?")
    return torch.minimum(torch.maximum(mu, mean - LATENT_LIMIT), mean + LATENT_LIMIT)


@contextmanager
def coding_threads(device: torch.device, threads: int | None = None):
    """Run the enclosed computation on ``threads`` CPU threads (None: leave the caller's
    setting), then restore the caller's setting.

    Some oneDNN kernels (1x1 convolutions on channels-last inputs, measured with torch
    2.14) split their sums differently with another number of threads, so the same network
    gives results that differ in the last bits. Files of format version 2 carry side
    information that makes such differences harmless (:mod:`semlib.entropy`), so they are
    coded on any thread count; files of version 1 need the decoder to repeat the encoder's
    arithmetic exactly and were written on ``CODING_THREADS`` threads.
    (``torch.set_num_threads`` is process-wide: do not code concurrently from Python
    threads that set other counts.)
    """
    n = torch.get_num_threads()
    if threads is None or device.type != "cpu" or n == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _check_input(x: torch.Tensor):
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images N x 3 x H x W, got shape {tuple(x.shape)}")
    if x.shape[2] % MAX_STRIDE or x.shape[3] % MAX_STRIDE:
        raise ValueError(f"height and width must be multiples of {MAX_STRIDE} (pad first), got {tuple(x.shape[2:])}")


def build_model(config: str | Config = "small") -> HierarchicalVAE:
    """A fresh model of a named configuration ('tiny', 'small', 'paper') or a :class:`Config`."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown configuration {config!r}; choose one of {sorted(CONFIGS)}")
        config = CONFIGS[config]
    return HierarchicalVAE(config)


def random_model(config: str | Config = "tiny", seed: int = 0, modulation_std: float = 0.3) -> HierarchicalVAE:
    """A model with random weights whose gamma conditioning is switched on, in eval mode: the
    modulations are zero at initialisation, which would make gamma a no-op, so they are drawn
    from N(0, ``modulation_std``). For tests, fuzzing and determinism checks, not for coding."""
    torch.manual_seed(seed)
    model = build_model(config)
    for m in model.modules():
        if isinstance(m, ResBlock):
            torch.nn.init.normal_(m.modulation.weight, std=modulation_std)
    return model.eval()


def config_dict(config: Config) -> dict:
    return asdict(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- configurations read from files

MAX_PARAMETERS = 400_000_000   # a configuration read from a file may not ask for more (about 4x 'paper')
MAX_NAME = 64                   # configuration names: printable ASCII, at most this many characters
_CONFIG_TUPLES = {"enc_widths": 5, "enc_blocks": 5, "dec_widths": 5, "dec_blocks": 5,
                  "latents": 4, "z_dims": 4, "kernels": 5}
# (smallest, largest) of each size; the largest are far above the 'paper' configuration
_CONFIG_BOUNDS = {"enc_widths": (1, 2048), "enc_blocks": (0, 64), "dec_widths": (1, 2048), "dec_blocks": (0, 64),
                  "latents": (1, 16), "z_dims": (1, 1024), "kernels": (1, 31), "emb_dim": (2, 2048)}


def _resblock_parameters(dim: int, emb: int, k: int, ratio: float) -> int:
    hidden = int(dim * ratio)
    return (dim * k * k + dim) + (emb * 2 * dim + 2 * dim) + (dim * hidden + hidden) + (hidden * dim + dim) + dim


def estimate_parameters(c: Config) -> int:
    """The parameter count of ``HierarchicalVAE(c)``, computed from the sizes alone (nothing is
    built): equal to :func:`count_parameters` of the built model."""
    e, ratio = c.emb_dim, c.mlp_ratio
    n = (33 * e + e) + (e * (e - 1) + (e - 1))                           # gamma embedding
    n += 3 * c.enc_widths[0] * 16 + c.enc_widths[0]                       # 4x4 stem
    for s in range(5):
        if s > 0:
            n += c.enc_widths[s - 1] * c.enc_widths[s] * 4 + c.enc_widths[s]
        n += c.enc_blocks[s] * _resblock_parameters(c.enc_widths[s], e, c.kernels[s], ratio)
    n += c.dec_widths[0]                                                  # learned constant
    for t in range(5):
        s, w = 4 - t, c.dec_widths[t]
        if t < 4:
            z, ew = c.z_dims[t], c.enc_widths[s]
            latent = (4 * _resblock_parameters(w, e, c.kernels[s], ratio) + (w * 2 * z + 2 * z)
                      + ((w + ew) * w + w) + (w * z + z) + (z * w + w) + (e * z + z))
            n += c.latents[t] * latent
            n += c.dec_widths[t] * c.dec_widths[t + 1] * 4 + c.dec_widths[t + 1] * 4    # 2x pixel-shuffle up
        n += c.dec_blocks[t] * _resblock_parameters(w, e, c.kernels[s], ratio)
    n += c.dec_widths[4] * 3 * 16 + 3 * 16                                # 4x pixel-shuffle head
    return n


def check_config_name(name) -> str:
    """A configuration name goes into every file (codec format: one length byte, ASCII):
    printable ASCII, 1 to MAX_NAME characters. Raises CheckpointError otherwise."""
    if not isinstance(name, str):
        raise CheckpointError(f"configuration field 'name' must be a string, got {type(name).__name__}")
    if not name or len(name) > MAX_NAME or not all(" " <= ch <= "~" for ch in name):
        shown = name[:40] + ("..." if len(name) > 40 else "")
        raise CheckpointError(f"configuration field 'name' must be 1 to {MAX_NAME} printable ASCII characters, "
                              f"got {shown!r} ({len(name)} characters)")
    return name


def config_from_dict(raw) -> Config:
    """The :class:`Config` stored in a checkpoint, checked field by field before anything is
    built: types, lengths, bounds (:data:`_CONFIG_BOUNDS`) and the parameter count it implies
    (:data:`MAX_PARAMETERS`). Raises CheckpointError naming the first bad field."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"the configuration is a {type(raw).__name__}, not a table of fields")
    fields = set(Config.__dataclass_fields__)
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise CheckpointError(f"unknown configuration field {str(unknown[0])[:40]!r}")
    required = ["name", *_CONFIG_TUPLES]
    for k in required:
        if k not in raw:
            raise CheckpointError(f"the configuration lacks the field {k!r}")
    values = {"name": check_config_name(raw["name"])}

    def whole(k, v, i=None):
        where = k if i is None else f"{k}[{i}]"
        if isinstance(v, bool) or not isinstance(v, int):
            raise CheckpointError(f"configuration field {where!r} must be a whole number, got {str(v)[:40]!r}")
        lo, hi = _CONFIG_BOUNDS[k]
        if not lo <= v <= hi:
            raise CheckpointError(f"configuration field {where!r} is {v}, outside {lo} .. {hi}")
        return v

    for k, n in _CONFIG_TUPLES.items():
        v = raw[k]
        if not isinstance(v, (list, tuple)) or len(v) != n:
            raise CheckpointError(f"configuration field {k!r} must be a list of {n} whole numbers, got {str(v)[:60]}")
        values[k] = tuple(whole(k, x, i) for i, x in enumerate(v))
    if any(k % 2 == 0 for k in values["kernels"]):
        raise CheckpointError(f"configuration field 'kernels' must hold odd sizes, got {list(values['kernels'])}")
    if sum(values["latents"]) > 64:
        raise CheckpointError(f"configuration field 'latents' asks for {sum(values['latents'])} latent blocks "
                              "(at most 64)")
    if "emb_dim" in raw:
        values["emb_dim"] = whole("emb_dim", raw["emb_dim"])
    for k, hi in (("mlp_ratio", 16.0), ("gain_residual", 8.0)):
        if k in raw:
            v = raw[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CheckpointError(f"configuration field {k!r} must be a number, got {str(v)[:40]!r}")
            if not (0 < v <= hi if k == "mlp_ratio" else 0 <= v <= hi):
                raise CheckpointError(f"configuration field {k!r} is {v:g}, outside {'(0' if k == 'mlp_ratio' else '[0'}, {hi:g}]")
            values[k] = float(v)
    for k in fields - set(values) - {"emb_dim", "mlp_ratio", "gain_residual"}:
        if k in raw:       # a field of Config that has no check here yet: taken as stored
            values[k] = tuple(raw[k]) if isinstance(raw[k], list) else raw[k]
    try:
        config = Config(**values)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the configuration does not fit ({_one_line(e)})") from None
    n = estimate_parameters(config)
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"the configuration asks for {n / 1e6:,.0f} M parameters, more than the limit of "
                              f"{MAX_PARAMETERS / 1e6:,.0f} M ('paper' has {estimate_parameters(CONFIGS['paper']) / 1e6:.0f} M)")
    return config


# --------------------------------------------------------------------------- checkpoints

CHECKPOINT_FORMAT = "semlib-model"
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "small.pt"


def read_checkpoint(path, error: str, device="cpu"):
    """``torch.load(path, weights_only=True)``: no pickled code is run. Any failure to read
    or unpickle raises CheckpointError("``error`` (the first line of the reason)")."""
    import warnings

    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of files it then refuses: the error says it all
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means "not a checkpoint"
        text = str(e)
        if "Weights only load failed" in text:     # torch's advice to load it unsafely is not passed on
            body = text.split("Check the documentation", 1)[0]
            marker = "WeightsUnpickler error:" if "WeightsUnpickler error:" in body else "trusted source."
            reason = body.split(marker, 1)[-1].strip() or "objects other than tensors"
            raise CheckpointError(f"{error} (it holds more than weights, and is refused unrun: "
                                  f"{_one_line(reason, 120)})") from None
        raise CheckpointError(f"{error} ({_one_line(e)})") from None


def _one_line(e: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (whitespace runs, newlines included, become one
    space), at most ``limit`` characters; its type's name when it says nothing."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def save_model(model: HierarchicalVAE, path, **meta) -> None:
    """Write the weights and configuration of ``model`` atomically (temp file + rename).
    ``meta`` (numbers and strings: steps, data, wall time ...) is stored beside them."""
    path = Path(path)
    check_config_name(model.config.name)          # it must fit the files the model will write
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("entropy.")}
    blob = {"format": CHECKPOINT_FORMAT, "version": 1, "config": asdict(model.config),
            "model": state, "meta": meta}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_model(path=None, device="cpu") -> HierarchicalVAE:
    """Load a checkpoint written by :func:`save_model` (or a training checkpoint of
    :mod:`semlib.train`, whose EMA weights are used), in eval mode.

    Without ``path``, the checkpoint shipped with the project. Raises
    :class:`semlib.CheckpointError` for a missing file, a file that is not a checkpoint
    (``torch.load`` runs with ``weights_only=True``, so pickled code is refused), or weights
    that do not fit the stored configuration.
    """
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    if not path.is_file():
        hint = " (no trained checkpoint ships with this version: pass one with --checkpoint)" \
            if path == SHIPPED_CHECKPOINT else ""
        raise CheckpointError(f"{path}: checkpoint not found{hint}")
    blob = read_checkpoint(path, f"{path}: not a readable semlib checkpoint", device)
    if not isinstance(blob, dict) or blob.get("format") not in (CHECKPOINT_FORMAT, "semlib-train"):
        raise CheckpointError(f"{path}: not a semlib checkpoint")
    if "config" not in blob:
        raise CheckpointError(f"{path}: the checkpoint holds no configuration")
    try:
        config = config_from_dict(blob["config"])      # checked before anything is built
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    state = blob.get("ema") if blob.get("format") == "semlib-train" else blob.get("model")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: the checkpoint holds no table of weights")
    try:
        model = HierarchicalVAE(config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the weights do not fit their configuration ({_one_line(e)})") from None
    missing = [k for k in missing if not k.startswith("entropy.")]
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: the weights hold NaN or infinite values ({bad[:3]})")
    if missing or unexpected:
        raise CheckpointError(f"{path}: the weights do not fit their configuration "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.meta = dict(blob.get("meta", {}))
    return model.to(device).eval()


def fingerprint(model: nn.Module) -> bytes:
    """8 bytes identifying the weights (sha256 over the float32 parameters and buffers in
    name order). Written into every file, so a file is never decoded with other weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith("entropy."):
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return h.digest()[:8]
