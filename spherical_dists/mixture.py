r"""Mixtures of von Mises-Fisher distributions fitted by expectation-maximisation (movMF).

The model (Banerjee, Dhillon, Ghosh & Sra 2005) is
:math:`f(x) = \sum_{k=1}^K \pi_k\, C_p(\kappa_k)\, e^{\kappa_k \mu_k^\top x}` on :math:`S^{p-1}`;
as a distribution it is ``MixtureSameFamily(Categorical(weights), VonMisesFisher(locs, concentrations))``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, MixtureSameFamily

from .constraints import sphere
from .fit import _concentration
from .special import _vmf_terms
from .von_mises_fisher import VonMisesFisher

__all__ = ["VonMisesFisherMixtureFit", "fit_vmf_mixture"]


class VonMisesFisherMixtureFit(NamedTuple):
    """Result of :func:`fit_vmf_mixture`; batch dimensions ``...`` are those of the data."""

    weights: Tensor
    """Mixing weights :math:`\\pi_k`, shape ``(..., K)``."""
    locs: Tensor
    """Mean directions :math:`\\mu_k`, shape ``(..., K, p)``."""
    concentrations: Tensor
    """Concentrations :math:`\\kappa_k`, shape ``(..., K)``."""
    log_likelihood: Tensor
    """Mean log-likelihood per point after each iteration, shape ``(iterations + 1, ...)``: the first
    row is that of the initialisation; EM never decreases it."""
    responsibilities: Tensor
    """Posterior probabilities of the components for each point, shape ``(..., n, K)``."""
    n_iter: int
    """Number of EM iterations run."""
    converged: bool
    """Whether every batch element met the tolerance before ``max_iter``."""

    def distribution(self, validate_args: bool | None = None) -> MixtureSameFamily:
        """The fitted mixture as a ``torch.distributions.MixtureSameFamily``."""
        components = VonMisesFisher(self.locs, self.concentrations, validate_args=validate_args)
        return MixtureSameFamily(Categorical(probs=self.weights), components, validate_args=validate_args)


class _Params(NamedTuple):
    log_weights: Tensor  # (B, K), float64
    locs: Tensor  # (B, K, p), data dtype
    concentrations: Tensor  # (B, K), float64


def _e_step(x: Tensor, params: _Params) -> tuple[Tensor, Tensor]:
    """Log-domain responsibilities ``(B, n, K)`` and mean log-likelihood ``(B,)`` (float64).

    ``log pi_k + log C_p(kappa_k) + kappa_k mu_k^T x`` is evaluated as
    ``log pi_k + (log C_p + kappa_k) + kappa_k (mu_k^T x - 1)``: no term of order kappa cancels."""
    dim = x.shape[-1]
    kappa = params.concentrations
    head = params.log_weights + _vmf_terms(dim, kappa).log_c_plus_kappa  # (B, K)
    cos = (x @ params.locs.transpose(-1, -2)).to(torch.float64)  # (B, n, K): the one O(n p K) product
    log_joint = head.unsqueeze(-2) + kappa.unsqueeze(-2) * (cos - 1.0)
    log_point = torch.logsumexp(log_joint, dim=-1, keepdim=True)
    return log_joint - log_point, log_point.squeeze(-1).mean(-1)


def _m_step(x64: Tensor, resp: Tensor, previous: _Params | None, floor: float, dtype: torch.dtype) -> _Params:
    """Weighted maximum-likelihood update of every component (``x64``: the data in float64; ``resp``:
    (B, n, K), float64); the directions are returned in ``dtype``, the data's."""
    n, dim = x64.shape[-2:]
    counts = resp.sum(-2)  # (B, K)
    # The resultants in float64: 1 - R of a concentrated component is about (p - 1) / (2 kappa), and a float32
    # sum over n points errs by about sqrt(n) eps_32 in R (p = 3, kappa = 1e5, n = 5e4: kappa 4.7x off).
    resultant = resp.transpose(-1, -2) @ x64  # (B, K, p)
    norm = torch.linalg.vector_norm(resultant, dim=-1)
    alive = counts > 1e-10 * n
    safe_counts = torch.where(alive, counts, 1.0)
    r = torch.clamp(norm / safe_counts, max=1.0)
    # A component that has collapsed onto identical points would get kappa = inf: the floor on 1 - R
    # (the data's own rounding level) keeps the likelihood finite.
    one_minus_r = torch.clamp(1.0 - r, min=floor)
    kappa = _concentration(dim, r, one_minus_r)
    positive = (norm > 0).unsqueeze(-1)
    e1 = torch.zeros_like(resultant)
    e1[..., 0] = 1.0
    locs = torch.where(positive, resultant / torch.where(positive, norm.unsqueeze(-1), 1.0), e1)
    if previous is not None:  # an empty component keeps its parameters (its weight goes to ~0)
        kappa = torch.where(alive, kappa, previous.concentrations)
        locs = torch.where((alive & (norm > 0)).unsqueeze(-1), locs.to(dtype), previous.locs)
    log_weights = torch.log(counts / n)
    return _Params(log_weights, locs.to(dtype), kappa)


def _kmeans_plus_plus(x: Tensor, n_components: int, generator: torch.Generator | None) -> Tensor:
    """k-means++ seeding on the sphere (Arthur & Vassilvitskii 2007) with the squared chord
    ``|x - c|^2 = 2 - 2 x^T c`` as distance: one-hot hard assignments ``(B, n, K)`` to the seeds."""
    batch, n, _ = x.shape
    rows = torch.arange(batch, device=x.device)
    first = torch.randint(n, (batch,), device=x.device, generator=generator)
    centers = [x[rows, first]]
    distance = torch.clamp(2.0 - 2.0 * (x @ centers[0].unsqueeze(-1)).squeeze(-1), min=0.0).to(torch.float64)
    for _ in range(1, n_components):
        # Where every point coincides with a seed already, any point will do.
        probabilities = torch.where(distance.sum(-1, keepdim=True) > 0, distance, 1.0)
        chosen = torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)
        centers.append(x[rows, chosen])
        new = torch.clamp(2.0 - 2.0 * (x @ centers[-1].unsqueeze(-1)).squeeze(-1), min=0.0).to(torch.float64)
        distance = torch.minimum(distance, new)
    nearest = (x @ torch.stack(centers, dim=-1)).argmax(-1)  # (B, n)
    return torch.nn.functional.one_hot(nearest, n_components).to(torch.float64)


def fit_vmf_mixture(
    x: Tensor,
    n_components: int,
    max_iter: int = 200,
    tol: float = 1e-6,
    init: str | tuple[Tensor, Tensor, Tensor] = "k-means++",
    generator: torch.Generator | None = None,
    validate_args: bool | None = None,
) -> VonMisesFisherMixtureFit:
    r"""Fit a mixture of ``n_components`` von Mises-Fisher distributions by EM (soft assignments).

    E-step, in the log domain:
    :math:`\log r_{ik} = \log\pi_k + \log C_p(\kappa_k) + \kappa_k\mu_k^\top x_i - \log f(x_i)`.
    M-step: :math:`\pi_k = \frac1n\sum_i r_{ik}` and :math:`(\mu_k, \kappa_k)` the weighted
    maximum-likelihood fit (:func:`spherical_dists.fit.fit_von_mises_fisher`) with weights
    :math:`r_{ik}`. Each iteration costs two :math:`n \times p \times K` matrix products on the
    data's device: the E-step's in the data's dtype, the M-step's resultants in float64 (a float32 sum
    over many points would lose :math:`1 - R` of a concentrated component; float32 data is copied to
    float64 once per fit); the per-component quantities are float64. EM never decreases the
    likelihood; it stops when the mean log-likelihood per point changes by less than
    ``tol * max(1, |value|)`` in every batch element, or after ``max_iter`` iterations.

    A component whose points coincide (to rounding) would have an infinite concentration, the
    degenerate maximum of the likelihood; ``1 - R`` is floored at the dtype's machine epsilon,
    which caps :math:`\kappa` near :math:`(p - 1) / (2\,\mathrm{eps})`.

    Parameters
    ----------
    x : Tensor
        Unit vectors, shape ``(..., n, p)``; leading dimensions are independent data sets fitted
        together (batched).
    n_components : int
        Number of components :math:`K \le n`.
    max_iter : int
        Largest number of EM iterations.
    tol : float
        Relative tolerance on the change of the mean log-likelihood per point.
    init : str or tuple of Tensor
        ``"k-means++"``: seeds drawn by k-means++ on the sphere from ``generator``, followed by an
        M-step on the hard assignments; or ``(weights, locs, concentrations)`` of shapes
        ``(..., K)``, ``(..., K, p)``, ``(..., K)`` to start from.
    generator : torch.Generator, optional
        Random generator on ``x``'s device for the seeding (torch's global one when None).
    validate_args : bool, optional
        Check that the rows of ``x`` have unit norm (torch's distribution default when None).

    Returns
    -------
    VonMisesFisherMixtureFit
        Weights, locs, concentrations, log-likelihood history, responsibilities; its
        ``distribution()`` is the fitted ``MixtureSameFamily``.

    Examples
    --------
    >>> import torch
    >>> from spherical_dists import VonMisesFisher
    >>> from spherical_dists.mixture import fit_vmf_mixture
    >>> gen = torch.Generator().manual_seed(0)
    >>> locs = torch.eye(3, dtype=torch.float64)[:2]  # two clusters, around e1 and e2
    >>> x = VonMisesFisher(locs, torch.tensor([50.0, 20.0], dtype=torch.float64)).sample((500,), generator=gen)
    >>> fit = fit_vmf_mixture(x.reshape(-1, 3), 2, generator=gen)
    >>> order = fit.locs[:, 0].argsort(descending=True)
    >>> fit.locs[order].round(decimals=1).abs()
    tensor([[1., 0., 0.],
            [0., 1., 0.]], dtype=torch.float64)
    >>> fit.concentrations[order].round(), fit.weights.round(decimals=2)
    (tensor([50., 19.], dtype=torch.float64), tensor([0.5000, 0.5000], dtype=torch.float64))
    """
    if not isinstance(x, Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError("x must be a floating-point tensor of shape (..., n, p)")
    n, dim = x.shape[-2:]
    if dim < 2:
        raise ValueError(f"x must have p >= 2 entries along its last dimension, got shape {tuple(x.shape)}")
    if isinstance(n_components, bool) or not isinstance(n_components, int) or not 1 <= n_components <= n:
        raise ValueError(f"n_components must be an integer in [1, n] = [1, {n}], got {n_components!r}")
    validate = Distribution._validate_args if validate_args is None else validate_args
    if validate and not sphere.check(x).all():
        raise ValueError("x must hold unit vectors along its last dimension (the support of the distribution)")
    batch_shape = x.shape[:-2]
    flat = x.reshape(-1, n, dim)
    flat64 = flat.to(torch.float64)  # for the M-step (see _m_step); no copy when x is float64
    floor = float(torch.finfo(x.dtype).eps)
    if isinstance(init, str):
        if init != "k-means++":
            raise ValueError(f"init must be 'k-means++' or a tuple (weights, locs, concentrations), got {init!r}")
        params = _m_step(flat64, _kmeans_plus_plus(flat, n_components, generator), None, floor, x.dtype)
    else:
        weights, locs, kappas = init
        params = _Params(
            torch.log(weights.to(torch.float64)).expand(batch_shape + (n_components,)).reshape(-1, n_components),
            locs.to(x.dtype).expand(batch_shape + (n_components, dim)).reshape(-1, n_components, dim),
            kappas.to(torch.float64).expand(batch_shape + (n_components,)).reshape(-1, n_components),
        )
    log_resp, log_likelihood = _e_step(flat, params)
    history = [log_likelihood]
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        params = _m_step(flat64, log_resp.exp(), params, floor, x.dtype)
        log_resp, log_likelihood = _e_step(flat, params)
        history.append(log_likelihood)
        change = (history[-1] - history[-2]).abs()
        if bool((change <= tol * history[-1].abs().clamp(min=1.0)).all()):
            converged = True
            break
    k_shape = batch_shape + (n_components,)
    return VonMisesFisherMixtureFit(
        weights=params.log_weights.exp().reshape(k_shape).to(x.dtype),
        locs=params.locs.reshape(k_shape + (dim,)),
        concentrations=params.concentrations.reshape(k_shape).to(x.dtype),
        log_likelihood=torch.stack(history).reshape((len(history),) + batch_shape),
        responsibilities=log_resp.exp().reshape(batch_shape + (n, n_components)).to(x.dtype),
        n_iter=iterations,
        converged=converged,
    )
