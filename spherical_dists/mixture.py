r"""Mixtures of von Mises-Fisher distributions fitted by expectation-maximisation (movMF).

The model (Banerjee, Dhillon, Ghosh & Sra 2005) is
:math:`f(x) = \sum_{k=1}^K \pi_k\, C_p(\kappa_k)\, e^{\kappa_k \mu_k^\top x}` on :math:`S^{p-1}`;
as a distribution it is ``MixtureSameFamily(Categorical(weights), VonMisesFisher(locs, concentrations))``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily

from ._checks import check_count, check_unit
from ._directional import compute_dtype
from ._fit import as_float64_directions, check_points, weighted_fit
from ._vmf import log_normalizer_plus_kappa
from .von_mises_fisher import VonMisesFisher

__all__ = ["VonMisesFisherMixtureFit", "fit_vmf_mixture", "kmeans_plus_plus"]


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
    locs: Tensor  # (B, K, p), the working dtype
    concentrations: Tensor  # (B, K), float64


def _e_step(x: Tensor, params: _Params) -> tuple[Tensor, Tensor]:
    """Log-domain responsibilities ``(B, n, K)`` and mean log-likelihood ``(B,)`` (float64).

    ``log pi_k + log C_p(kappa_k) + kappa_k mu_k^T x`` is evaluated as
    ``log pi_k + (log C_p + kappa_k) + kappa_k (mu_k^T x - 1)``: no term of order kappa cancels."""
    dim = x.shape[-1]
    kappa = params.concentrations
    head = params.log_weights + log_normalizer_plus_kappa(dim, kappa)  # (B, K)
    cos = (x @ params.locs.transpose(-1, -2)).to(torch.float64)  # (B, n, K): the one O(n p K) product
    log_joint = head.unsqueeze(-2) + kappa.unsqueeze(-2) * (cos - 1.0)
    log_point = torch.logsumexp(log_joint, dim=-1, keepdim=True)
    return log_joint - log_point, log_point.squeeze(-1).mean(-1)


def _m_step(x64: Tensor, resp: Tensor, previous: _Params | None, floor: float, dtype: torch.dtype) -> _Params:
    """Weighted maximum-likelihood update of every component (``x64``: the data as float64 unit
    vectors; ``resp``: (B, n, K), float64), by the same estimator as ``VonMisesFisher.fit``; the
    directions are returned in ``dtype``, the working one."""
    n = x64.shape[-2]
    counts = resp.sum(-2)  # (B, K)
    alive = counts > 1e-10 * n
    # The resultants in float64: 1 - R of a concentrated component is about (p - 1) / (2 kappa), and a float32
    # sum over n points errs by about sqrt(n) eps_32 in R (p = 3, kappa = 1e5, n = 5e4: kappa 4.7x off).
    # A component that has collapsed onto identical points would get kappa = inf: the floor on 1 - R
    # (the data's own rounding level) keeps the likelihood finite.
    locs, kappa = weighted_fit(x64, resp.transpose(-1, -2), floor=floor)
    locs = locs.to(dtype)
    # An empty component keeps its parameters (its weight goes to ~0), or is uniform at the start; so
    # does the direction of a component whose resultant vanishes (kappa = 0: the direction is moot).
    keep = alive & (kappa > 0)
    if previous is None:
        e1 = torch.zeros_like(locs)
        e1[..., 0] = 1.0
        kappa = torch.where(alive, kappa, 0.0)
        locs = torch.where(keep.unsqueeze(-1), locs, e1)
    else:
        kappa = torch.where(alive, kappa, previous.concentrations)
        locs = torch.where(keep.unsqueeze(-1), locs, previous.locs)
    return _Params(torch.log(counts / n), locs, kappa)


def kmeans_plus_plus(x: Tensor, n_components: int, generator: torch.Generator | None) -> Tensor:
    r"""k-means++ seeding on the sphere, as hard assignments of the points to the seeds.

    The k-means++ seeding of Arthur & Vassilvitskii (2007) with the squared chord distance
    :math:`\|x - c\|^2 = 2 - 2\, x^\top c` between unit vectors: the first seed is a point drawn
    uniformly, each further seed a point drawn with probability proportional to its squared chord to
    the nearest seed so far (uniformly where every point coincides with a seed already). Each
    point is then assigned to the seed of largest :math:`x^\top c`, the first one on a tie. This is
    the start of :func:`fit_vmf_mixture <spherical_dists.fit_vmf_mixture>` with ``init="k-means++"``.

    Parameters
    ----------
    x : Tensor
        Unit vectors, shape ``(B, n, p)``: ``B`` independent sets of ``n`` points, seeded together
        (the batch dimension is required; ``x.unsqueeze(0)`` for one set).
    n_components : int
        Number of seeds :math:`K \ge 1`.
    generator : torch.Generator or None
        Random generator on ``x``'s device (torch's global one when None); the seeding takes one
        ``torch.randint`` and then :math:`K - 1` ``torch.multinomial`` draws from it.

    Returns
    -------
    Tensor
        One-hot assignments, float64, shape ``(B, n, K)``: entry ``[b, i, k]`` is 1 where the
        ``k``-th seed of set ``b`` is the nearest to point ``i``, else 0. A column can be empty
        (a seed that duplicates an earlier one loses its points to it).

    References
    ----------
    D. Arthur, S. Vassilvitskii (2007). k-means++: the advantages of careful seeding. *Proceedings
    of the 18th ACM-SIAM Symposium on Discrete Algorithms (SODA)*, 1027-1035.
    https://dl.acm.org/doi/10.5555/1283383.1283494

    Examples
    --------
    >>> import torch
    >>> from spherical_dists.mixture import kmeans_plus_plus
    >>> x = torch.tensor([[1.0, 0.0, 0.0], [0.999, 0.045, 0.0], [0.0, 1.0, 0.0], [0.0, 0.999, 0.045]])
    >>> x = torch.nn.functional.normalize(x, dim=-1).unsqueeze(0)  # B = 1 set of n = 4 points
    >>> one_hot = kmeans_plus_plus(x, 2, torch.Generator().manual_seed(0))
    >>> one_hot.shape, one_hot.dtype
    (torch.Size([1, 4, 2]), torch.float64)
    >>> labels = one_hot.argmax(-1)[0]  # the two pairs of near points get one seed each
    >>> bool(labels[0] == labels[1]) and bool(labels[2] == labels[3]) and bool(labels[0] != labels[2])
    True
    """
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


def _initial_params(
    init: tuple[Tensor, Tensor, Tensor], batch_shape: torch.Size, n_components: int, dim: int, dtype: torch.dtype
) -> _Params:
    """Check a user's ``(weights, locs, concentrations)`` and flatten them to the fit's batch."""
    if not (isinstance(init, tuple) and len(init) == 3 and all(isinstance(t, Tensor) for t in init)):
        raise ValueError("init must be 'k-means++' or a tuple of three tensors (weights, locs, concentrations)")
    weights, locs, kappas = init
    shapes = {
        "weights": (weights, (n_components,)),
        "locs": (locs, (n_components, dim)),
        "concentrations": (kappas, (n_components,)),
    }
    flat = {}
    for name, (value, event) in shapes.items():
        if not value.is_floating_point():
            raise ValueError(f"init's {name} must be a floating-point tensor, got {value.dtype}")
        try:
            flat[name] = value.expand(batch_shape + event).reshape((-1,) + event)
        except RuntimeError:
            raise ValueError(
                f"init's {name} of shape {tuple(value.shape)} does not broadcast to {tuple(batch_shape + event)}"
            ) from None
    weights64, kappas64 = flat["weights"].to(torch.float64), flat["concentrations"].to(torch.float64)
    if not (torch.isfinite(weights64) & (weights64 >= 0)).all() or not (weights64.sum(-1) > 0).all():
        raise ValueError("init's weights must be finite, non-negative and not all zero")
    if not (torch.isfinite(kappas64) & (kappas64 >= 0)).all():
        raise ValueError("init's concentrations must be finite and non-negative")
    check_unit(locs, "init's locs")
    # Like torch's Categorical(probs=...), the weights are normalised to sum to 1.
    log_weights = torch.log(weights64) - torch.log(weights64.sum(-1, keepdim=True))
    return _Params(log_weights, flat["locs"].to(dtype), kappas64)


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
    maximum-likelihood fit with weights :math:`r_{ik}`, by the estimator of
    :meth:`VonMisesFisher.fit <spherical_dists.VonMisesFisher.fit>`. Each iteration costs two
    :math:`n \times p \times K` matrix products on the data's device: the E-step's in the data's
    dtype (float32 for half-precision data, whose results are float32), the M-step's resultants in
    float64 (a float32 sum over many points would lose :math:`1 - R` of a concentrated component;
    float32 data is copied to float64 once per fit); the per-component quantities are float64. EM never decreases the
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
        ``(..., K)``, ``(..., K, p)``, ``(..., K)`` to start from: weights finite, non-negative
        and normalised to sum to 1 (as ``Categorical(probs=...)`` does), locs of unit norm in
        their own dtype, concentrations finite and non-negative; anything else raises a ``ValueError``.
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
    n, dim = check_points(x, validate_args)
    n_components = check_count(n_components, "n_components", 1, n)
    max_iter = check_count(max_iter, "max_iter", 0)
    if not (isinstance(tol, (int, float)) and 0 <= tol < float("inf")):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    batch_shape = x.shape[:-2]
    # Half-precision data are computed in float32: float16's eps (1e-3) in the E-step's products
    # would make EM's log-likelihood go down.
    dtype = compute_dtype(x.dtype)
    flat = x.reshape(-1, n, dim).to(dtype)
    flat64 = as_float64_directions(flat)  # for the M-step (see _m_step)
    floor = float(torch.finfo(dtype).eps)
    if isinstance(init, str):
        if init != "k-means++":
            raise ValueError(f"init must be 'k-means++' or a tuple (weights, locs, concentrations), got {init!r}")
        params = _m_step(flat64, kmeans_plus_plus(flat, n_components, generator), None, floor, dtype)
    else:
        params = _initial_params(init, batch_shape, n_components, dim, dtype)
    log_resp, log_likelihood = _e_step(flat, params)
    history = [log_likelihood]
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        params = _m_step(flat64, log_resp.exp(), params, floor, dtype)
        log_resp, log_likelihood = _e_step(flat, params)
        history.append(log_likelihood)
        change = (history[-1] - history[-2]).abs()
        if bool((change <= tol * history[-1].abs().clamp(min=1.0)).all()):
            converged = True
            break
    k_shape = batch_shape + (n_components,)
    return VonMisesFisherMixtureFit(
        weights=params.log_weights.exp().reshape(k_shape).to(dtype),
        locs=params.locs.reshape(k_shape + (dim,)),
        concentrations=params.concentrations.reshape(k_shape).to(dtype),
        log_likelihood=torch.stack(history).reshape((len(history),) + batch_shape),
        responsibilities=log_resp.exp().reshape(batch_shape + (n, n_components)).to(dtype),
        n_iter=iterations,
        converged=converged,
    )
