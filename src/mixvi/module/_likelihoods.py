"""Observation models p(x|z): decoder heads that return a torch Distribution.

Count likelihoods reuse :mod:`scvi.distributions` and scale a softmax over features by
the observed library size, as scVI does. Every distribution's ``log_prob`` is
element-wise, so the module sums it over features (never averages it), which keeps
the reconstruction term and the KL on the same scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial, Poisson, ZeroInflatedNegativeBinomial
from torch import nn
from torch.distributions import Bernoulli, Distribution, Normal

from ._networks import affine

Likelihood = Literal["normal", "bernoulli", "nb", "zinb", "poisson"]
LIKELIHOODS: tuple[str, ...] = ("normal", "bernoulli", "nb", "zinb", "poisson")
COUNT_LIKELIHOODS: frozenset[str] = frozenset({"nb", "zinb", "poisson"})

# keeps the Poisson rate strictly positive for all-zero cells (library size 0), where
# log(rate) would otherwise give an infinite gradient
_RATE_EPS = 1e-8


def check_likelihood(likelihood: str) -> str:
    """Return ``likelihood`` if mixvi knows it, else raise a ``ValueError`` listing the choices."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(
            f"Unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}."
        )
    return likelihood


class LikelihoodHead(nn.Module):
    """Map decoder features to p(x|z).

    Parameters
    ----------
    likelihood
        ``"normal"`` (learned per-feature scale; for scaled or log data), ``"bernoulli"``
        (values in [0, 1], e.g. images), or ``"nb"``, ``"zinb"``, ``"poisson"`` (counts).
    n_in
        Width of the decoder output feeding the head.
    n_output
        Number of features.
    n_cat_list
        Covariate categories, when the head itself takes them (linear decoders).
    learn_scale
        For ``"normal"``: learn a per-feature standard deviation. If ``False`` the scale is
        fixed at 1 and the reconstruction term is half the squared error plus a constant.
    """

    def __init__(
        self,
        likelihood: Likelihood,
        n_in: int,
        n_output: int,
        n_cat_list: Sequence[int] | None = None,
        learn_scale: bool = True,
    ) -> None:
        super().__init__()
        self.likelihood = check_likelihood(likelihood)
        self.loc = affine(n_in, n_output, n_cat_list)
        self.zi_logits = affine(n_in, n_output, n_cat_list) if likelihood == "zinb" else None
        if likelihood in ("nb", "zinb"):
            # per-feature inverse dispersion, as scVI's dispersion="gene"
            self.log_theta = nn.Parameter(torch.randn(n_output))
        if likelihood == "normal" and learn_scale:
            self.log_scale = nn.Parameter(torch.zeros(n_output))
        else:
            self.register_parameter("log_scale", None)

    @property
    def is_count(self) -> bool:
        return self.likelihood in COUNT_LIKELIHOODS

    def forward(
        self, h: torch.Tensor, library: torch.Tensor | None, *cat_list: torch.Tensor
    ) -> Distribution:
        """Return p(x|z).

        ``library`` is the per-cell total count (shape ``(n, 1)``), used by count likelihoods.
        """
        out = self.loc(h, *cat_list)
        if self.likelihood == "normal":
            if self.log_scale is None:
                scale = torch.ones_like(out)
            else:
                scale = (F.softplus(self.log_scale) + 1e-4).expand_as(out)
            return Normal(out, scale, validate_args=False)
        if self.likelihood == "bernoulli":
            # validate_args=False: on grey-level images in [0, 1] log_prob is the
            # cross-entropy, the standard image VAE objective (e.g. VaDE)
            return Bernoulli(logits=out, validate_args=False)
        if library is None:
            raise ValueError(f"The {self.likelihood!r} likelihood needs the library size.")
        scale = torch.softmax(out, dim=-1)
        mu = library * scale
        if self.likelihood == "poisson":
            return Poisson(mu + _RATE_EPS, scale=scale, validate_args=False)
        theta = torch.exp(self.log_theta).expand_as(mu)
        if self.likelihood == "nb":
            return NegativeBinomial(mu=mu, theta=theta, scale=scale)
        return ZeroInflatedNegativeBinomial(
            mu=mu, theta=theta, zi_logits=self.zi_logits(h, *cat_list), scale=scale
        )
