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

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.entropy_models import GaussianConditional

from semlib import entropy
from semlib.allocation import BLOCK
from semlib.entropy import SCALE_TABLE, coding_threads
from semlib.models.layers import GammaEmbedding, LatentBlock, ResBlock, _PatchUp, _patch_down
from semlib.semc import MAX_STRIDE              # images are padded to a multiple of this (the file format's too)

if TYPE_CHECKING:
    from semlib.models.zoo import Config

LATENT_LIMIT = 1 << 16          # |round(mu_q - mu_p)| is clipped to this before coding
MIN_SYMBOLS = 8                 # compressai's encoder overruns its buffer on strings of 1-3 symbols


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
        """Top-down pass. ``mode``: 'noise' or 'mixed' (training; 'mixed' also for encoder-side
        refinement), 'round' (test-time forward), 'compress' (also entropy-codes each latent),
        'decompress' (reads them from ``strings``).
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
        k = 0                                               # latent blocks so far, in coding order
        for s, latent_blocks, blocks, up in self.decoder_scales():
            emb = embs[s]
            for block in latent_blocks:
                if mode == "decompress":
                    state = block.decompress(state, emb, self._reader(strings[k], k, tables, coding))
                else:
                    state, lik = block(state, emb, None if latents is not None else feats[s],
                                       self._quantizer(mode), latent=None if latents is None else latents[k],
                                       bound=None if mode in ("noise", "mixed") else self._bounder(k, mode),
                                       record=record,
                                       code=self._coder(k, out_strings, coding) if mode == "compress" else None)
                    if mode != "compress":          # the file needs z, not its likelihood
                        likelihoods.append(lik)
                k += 1
            if s == 1 and not reconstruct:                  # /8 holds the last latents
                return None, likelihoods, out_strings
            for block in blocks:
                state = block(state, emb)
            if up is not None:
                state = up(state)
        x_hat = (self.head(state).float() + 1.0) / 2.0
        return x_hat, likelihoods, out_strings

    def decoder_scales(self):
        """The top-down path, coarse to fine (/64, /32, /16, /8, /4): per scale the index s of
        its gamma embedding and encoder feature (4 = /64 ... 0 = /4), its latent blocks (none at
        /4), its residual blocks, and the upsampling after it (None at /4: the head follows)."""
        return zip(range(4, -1, -1), [*self.dec_latents, []], self.dec_stages, [*self.dec_up, None])

    def _quantizer(self, mode):
        return lambda mu, scale, mean: self._quantize(mu, scale, mean, mode)

    @staticmethod
    def _bounder(k, mode):
        return lambda mu, mean: _bound_latent(mu, mean, k, strict=mode == "compress")

    def _coder(self, k, out_strings, coding):
        """Entropy-code latent ``k`` (its posterior means ``mu`` around the prior) into ``out_strings``."""
        def code(mu, mean, scale):
            if mu[0].numel() < MIN_SYMBOLS:
                raise ValueError(f"latent {k} has {mu[0].numel()} values per image; compressai's "
                                 f"encoder needs at least {MIN_SYMBOLS} (widen z_dims)")
            indexes = entropy.build_indexes(self.entropy, scale)
            out_strings.append(self.entropy.compress(mu, indexes, means=mean))
            if coding is not None:
                self._record_coding(coding, mu, mean, scale, indexes)
        return code

    def _reader(self, strings, k, tables, coding):
        return lambda mean, scale: self._decode_latent(strings, k, scale, mean, tables, coding)

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
            if mode == "compress":          # the file needs z, not its likelihood
                return self.entropy.quantize(mu.float(), "dequantize", mean.float()), None
            if mode == "mixed":           # training: the decoder sees the rounded value (straight
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
        embs = self.embeddings(self.log_gamma_map(gamma, x))
        feats = self.encode_features(x, embs)
        x_hat, likelihoods, _ = self.top_down(embs, shape, feats, self.train_quantization if self.training else "round")
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


def _bound_latent(mu: torch.Tensor, mean: torch.Tensor, k: int, strict: bool) -> torch.Tensor:
    """Clip the posterior mean so that ``round(mu - mean)`` stays within +-LATENT_LIMIT
    (compressai's encoder loops without end on values near 2**30, and NaN becomes one).
    With ``strict`` (compress), non-finite values mean broken weights and raise ValueError."""
    if strict and not (torch.isfinite(mu).all() and torch.isfinite(mean).all()):
        raise ValueError(f"latent {k}: the model produced non-finite values (NaN or inf); are the weights broken?")
    return torch.minimum(torch.maximum(mu, mean - LATENT_LIMIT), mean + LATENT_LIMIT)


def _channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _check_input(x: torch.Tensor):
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images N x 3 x H x W, got shape {tuple(x.shape)}")
    if x.shape[2] % MAX_STRIDE or x.shape[3] % MAX_STRIDE:
        raise ValueError(f"height and width must be multiples of {MAX_STRIDE} (pad first), got {tuple(x.shape[2:])}")
