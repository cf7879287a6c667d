"""The layers of the network (docs/METHOD.md §4-5): the gamma embedding, the AdaLN residual
block, and the latent block, which owns its prior, posterior and the order of its steps in
training, compression and decompression (:meth:`LatentBlock.forward`,
:meth:`LatentBlock.decompress`). :mod:`semlib.models.vae` stacks them."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from semlib.allocation import GAMMA_RANGE

GAIN_SPAN = math.log(GAMMA_RANGE[1] / GAMMA_RANGE[0])


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

    def forward(self, state, emb, enc_feature, quantize, latent=None, bound=None, record=None, code=None):
        """One step of the top-down path in training, test-time forward and compression:
        prior, posterior mean mu_q (or the given ``latent``), then ``bound(mu, mean)`` (clip
        before rounding), ``record`` (a list that receives mu), ``code(mu, mean, scale)``
        (the entropy coder), ``quantize(mu, scale, mean)`` -> (z, likelihood), and the state
        update. Returns (state, likelihood)."""
        state = self.res_in(state, emb)
        mean, scale = self.prior(state, emb)
        mu = self.posterior_mean(state, enc_feature, emb) if latent is None else latent
        if bound is not None:
            mu = bound(mu, mean)
        if record is not None:
            record.append(mu.detach())
        if code is not None:
            code(mu, mean, scale)
        z, lik = quantize(mu, scale, mean)
        return self.update(state, z, emb), lik

    def decompress(self, state, emb, read):
        """The same step in decompression: z = ``read(mean, scale)`` from the latent string."""
        state = self.res_in(state, emb)
        mean, scale = self.prior(state, emb)
        return self.update(state, read(mean, scale), emb)


def _patch_down(c_in, c_out):
    return nn.Conv2d(c_in, c_out, 2, stride=2)


class _PatchUp(nn.Sequential):
    def __init__(self, c_in, c_out, rate):
        super().__init__(nn.Conv2d(c_in, c_out * rate * rate, 1), nn.PixelShuffle(rate))
