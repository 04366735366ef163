"""The von Mises-Fisher distribution on the unit hypersphere."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _marginal, _sampling
from ._cancellation import sum_with_smaller_terms
from ._checks import check_unit, validating
from ._directional import DirectionalDistribution, Shape, compute_dtype
from ._fit import as_float64_directions, check_points, check_weights, weighted_fit
from ._vmf import log_normalizer_pair, log_normalizer_plus_kappa, vmf_terms
from .hyperspherical_uniform import log_sphere_area
from .special import vmf_log_normalizer, vmf_mean_resultant_length

__all__ = ["VonMisesFisher"]


class VonMisesFisher(DirectionalDistribution):
    r"""von Mises-Fisher distribution on the unit sphere :math:`S^{p-1} \subset \mathbb{R}^p`.

    .. math::

        f(z; \mu, \kappa) = C_p(\kappa)\, e^{\kappa \mu^\top z}, \qquad
        C_p(\kappa) = \frac{\kappa^{p/2-1}}{(2\pi)^{p/2} I_{p/2-1}(\kappa)},

    with mean direction :math:`\mu` (``loc``, unit norm) and concentration :math:`\kappa \ge 0`.
    :math:`\kappa = 0` is exactly the uniform distribution; large :math:`\kappa` (1e8 and more)
    approaches a point mass at :math:`\mu`. Every quantity is exact for every dimension
    :math:`p \ge 2` (see :mod:`spherical_dists.special`).

    ``rsample`` is reparameterised: gradients reach ``loc`` exactly (the tangent direction is
    built by projecting a Gaussian onto the plane orthogonal to ``loc``) and ``concentration``
    without bias, by implicit reparameterisation of the marginal :math:`w = \mu^\top z` (Figurnov
    et al. 2018). When ``concentration`` does not require grad, that gradient costs nothing.

    Args:
        loc (Tensor): mean direction, shape ``(..., p)``, unit norm along the last dimension.
        concentration (Tensor or float): :math:`\kappa \ge 0`, shape broadcastable with
            ``loc.shape[:-1]``.
        validate_args (bool, optional): check parameters and samples (torch's default applies).

    Example: a VAE whose latent goes from ``Normal`` to ``VonMisesFisher`` by changing two lines
    (the Gaussian lines are in the comments); the KL to the uniform prior is constant when
    :math:`\kappa` is fixed, which is what keeps the posterior from collapsing::

        >>> import torch
        >>> import torch.nn.functional as F
        >>> from torch.distributions import Independent, Normal, kl_divergence
        >>> from spherical_dists import HypersphericalUniform, VonMisesFisher
        >>> _ = torch.manual_seed(0)
        >>> encoder, decoder = torch.nn.Linear(784, 2 * 16), torch.nn.Linear(16, 784)
        >>> x = torch.rand(8, 784)
        >>> mu, log_sigma = encoder(x).chunk(2, dim=-1)
        >>> # q = Independent(Normal(mu, log_sigma.exp()), 1)
        >>> # prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
        >>> q = VonMisesFisher(F.normalize(mu, dim=-1), torch.tensor(50.0))
        >>> prior = HypersphericalUniform(16)
        >>> z = q.rsample()  # (8, 16), on the sphere, differentiable in mu
        >>> recon = F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
        >>> loss = (recon + kl_divergence(q, prior)).mean()
        >>> loss.backward()
        >>> kl_divergence(q, prior)[0]  # kappa A_p + log C_p + log |S^15|, a constant: no gradient
        tensor(10.3686)
    """

    def expand(self, batch_shape: Shape, _instance: VonMisesFisher | None = None) -> VonMisesFisher:
        """A view of this distribution with a larger ``batch_shape`` (parameters are expanded, not copied)."""
        return self._expand_into(self._get_checked_instance(VonMisesFisher, _instance), batch_shape)

    # ------------------------------------------------------------------ moments

    def _mean_length(self) -> Tensor:
        return vmf_mean_resultant_length(self.dim, self.concentration)

    @property
    def mean(self) -> Tensor:
        r""":math:`E[z] = A_p(\kappa)\, \mu`."""
        return self._mean_length().unsqueeze(-1) * self.loc

    @property
    def mode(self) -> Tensor:
        r"""The mean direction :math:`\mu` (for :math:`\kappa = 0` every point is a mode; ``loc`` is returned)."""
        return self.loc

    def _covariance_factors(self) -> tuple[Tensor, Tensor]:
        r"""``(a, s)`` with :math:`\mathrm{Cov}[z] = a (I - \mu\mu^\top) + s\, \mu\mu^\top`
        (Mardia & Jupp 2000, 9.3): :math:`a = A/\kappa` (:math:`\to 1/p` at :math:`\kappa = 0`) and
        :math:`s = \mathrm{Var}[\mu^\top z] = (1 - A)(1 + A) - (p - 1) A / \kappa`.

        Computed in float64 from :math:`1 - A` (exact as :math:`A \to 1`): the two terms of
        :math:`s` agree to about :math:`1/\kappa` of their size, so its relative error grows as
        :math:`\kappa \cdot 10^{-16}` (1e-8 at :math:`\kappa = 10^8`, within float32's precision)."""
        kappa = self.concentration.to(torch.float64)
        terms = vmf_terms(self.dim, kappa)
        positive = kappa > 0
        a = torch.where(positive, terms.mean_length / torch.where(positive, kappa, 1.0), 1.0 / self.dim)
        along = terms.one_minus_mean_length * (2.0 - terms.one_minus_mean_length) - (self.dim - 1) * a
        return a.to(self.loc.dtype), along.to(self.loc.dtype)

    @property
    def variance(self) -> Tensor:
        r"""Per-coordinate variance, the diagonal of :attr:`covariance_matrix`:
        :math:`\frac{A}{\kappa}(1 - \mu_i^2) + \mathrm{Var}[\mu^\top z]\, \mu_i^2`."""
        a, along = self._covariance_factors()
        mu_sq = self.loc**2
        return a.unsqueeze(-1) * (1.0 - mu_sq) + along.unsqueeze(-1) * mu_sq

    @property
    def covariance_matrix(self) -> Tensor:
        r""":math:`\mathrm{Cov}[z] = \frac{A}{\kappa} (I - \mu\mu^\top) + \mathrm{Var}[\mu^\top z]\, \mu\mu^\top`
        with :math:`\mathrm{Var}[\mu^\top z] = 1 - A^2 - (p - 1) A / \kappa`, shape
        ``batch_shape + (p, p)`` (mind the memory at large p)."""
        a, along = self._covariance_factors()
        eye = torch.eye(self.dim, dtype=self.loc.dtype, device=self.loc.device)
        outer = self.loc.unsqueeze(-1) * self.loc.unsqueeze(-2)
        return a[..., None, None] * (eye - outer) + along[..., None, None] * outer

    # ------------------------------------------------------------------ densities

    def log_prob(self, value: Tensor) -> Tensor:
        r""":math:`\log C_p(\kappa) + \kappa \mu^\top z`, evaluated as
        :math:`L - \kappa h` with :math:`L = \log C_p(\kappa) + \kappa` and
        :math:`h = \tfrac12\lVert z - \mu\rVert^2 = 1 - \mu^\top z` on the sphere, which keeps full
        precision at large :math:`\kappa` (no term of size :math:`\kappa`).

        The derivative in :math:`\kappa`, :math:`\mu^\top z - A_p(\kappa)`, is formed as
        :math:`c - A` with :math:`c = \mu^\top z` where :math:`c + A \le 1` and as
        :math:`(1 - A) - h` elsewhere, whichever has the smaller terms: relative precision with
        respect to :math:`|\mu^\top z| + A_p(\kappa)` for every :math:`p` and :math:`\kappa`
        (autograd on :math:`L - \kappa h` alone would give :math:`(1 - A) - h`, which is 0 in float32
        once :math:`A < 10^{-8}`). Derivatives in ``value`` and ``loc`` are those of :math:`-\kappa h`."""
        if self._validate_args:
            self._validate_sample(value)
        dtype = compute_dtype(self.loc.dtype)
        z, mu = value.to(dtype), self.loc.to(dtype)
        kappa = self.concentration.to(dtype)
        h = 0.5 * (z - mu).pow(2).sum(-1)
        if not (torch.is_grad_enabled() and kappa.requires_grad):
            return (log_normalizer_plus_kappa(self.dim, kappa) - kappa * h).to(self.loc.dtype)
        log_c, log_c_plus_kappa, mean_length = log_normalizer_pair(self.dim, kappa)
        fixed = kappa.detach()
        step = kappa - fixed  # zero: carries the derivative in kappa, and nothing else, to the terms below
        cos = (z * mu).sum(-1)
        small = (log_c - log_c.detach()) + step * cos  # d/dkappa: cos - A
        large = (log_c_plus_kappa - log_c_plus_kappa.detach()) - step * h  # d/dkappa: (1 - A) - h
        use_small = (cos + mean_length.detach() <= 1.0).detach()
        out = log_c_plus_kappa.detach() - fixed * h + torch.where(use_small, small, large)
        return out.to(self.loc.dtype)

    def _kl_to_uniform(self) -> Tensor:
        r"""KL to the uniform distribution, two exact ways:
        :math:`\kappa A - G = (\log C_p(\kappa) + \kappa) + \log|S^{p-1}| - \kappa (1 - A)`, with
        :math:`G = \log C_p(0) - \log C_p(\kappa)`. The first form is exact to relative
        precision at small kappa (both terms ~ kappa^2), the second at large kappa (no term ~ kappa);
        the one whose terms are smaller is used."""
        kappa = self.concentration
        terms = vmf_terms(self.dim, kappa)
        return sum_with_smaller_terms(
            (kappa * terms.mean_length, -terms.gap),
            (
                terms.log_c_plus_kappa,
                torch.full_like(kappa, log_sphere_area(self.dim)),
                -kappa * terms.one_minus_mean_length,
            ),
        )

    def entropy(self) -> Tensor:
        r""":math:`H = -\log C_p(\kappa) - \kappa A_p(\kappa) = \log|S^{p-1}| - \mathrm{KL}(q \,\|\, U)`."""
        return log_sphere_area(self.dim) - self._kl_to_uniform()

    def log_normalizer(self) -> Tensor:
        r""":math:`\log C_p(\kappa)`."""
        return vmf_log_normalizer(self.dim, self.concentration)

    # ------------------------------------------------------------------ sampling

    def _draw_marginal(self, kappa: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Wood's rejection sampler (the exact inverse CDF at p = 3), with the concentration's
        gradient by implicit reparameterisation: see ``_marginal``."""
        omw, opw = _marginal.sample_marginal(kappa.detach().to(torch.float64), self.dim, generator)
        return _marginal.implicit_gradient(kappa, omw, opw, self.dim)

    def _components(
        self, loc: Tensor, kappa: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The Gaussians of ``v`` before the marginal (p >= 4), so that their parallel fill runs
        while the marginal is drawn; on CUDA, the Triton kernel draws all three in one launch."""
        drawn = _sampling.triton_components(loc, kappa.detach(), generator)
        if drawn is None:
            return _sampling.components(loc, lambda: self._draw_marginal(kappa, generator), generator)
        omw, opw, v = drawn
        return (*_marginal.implicit_gradient(kappa, omw, opw, self.dim), v)

    def _fused_sample(self, loc: Tensor, kappa: Tensor, generator: torch.Generator | None) -> Tensor:
        """``z`` drawn in place, chunk by chunk (or by the Triton kernel on CUDA)."""
        return _sampling.sample(loc, kappa, generator)

    # ------------------------------------------------------------------ misc

    @classmethod
    def fit(
        cls,
        x: Tensor,
        weights: Tensor | None = None,
        loc: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> VonMisesFisher:
        r"""Maximum-likelihood fit to unit vectors: the one public way to fit a single vMF.

        .. math::

            \hat\mu = \frac{S}{\lVert S \rVert}, \quad A_p(\hat\kappa) = \bar R = \frac{\lVert S \rVert}{\sum_i w_i},
            \qquad S = \sum_i w_i x_i,

        solved from Sra's (2012) start by Newton steps in float64 with the package's exact Bessel
        ratios: the relative error of :math:`\hat\kappa` as the root of :math:`A_p(\kappa) = \bar R`
        is below 1e-12 for every :math:`p \ge 2` and :math:`\bar R \in (0, 1)`; :math:`1 - \bar R`
        is taken from the spread of the points where :math:`\bar R > 1/2`, so that concentrated
        data keep their digits. With ``loc`` given (scipy's ``floc``), only the concentration is
        fitted: :math:`A_p(\hat\kappa) = \mu^\top S / \sum_i w_i`, and 0 where that is not positive.

        :math:`\bar R = 0` (e.g. two antipodal points) gives ``concentration = 0``, the uniform
        distribution, whose direction is undefined: ``loc`` is then :math:`e_1`. Points that all
        coincide (to rounding; e.g. ``n = 1``) have no finite maximum-likelihood concentration
        (the likelihood grows without bound towards a point mass): that raises a ``ValueError``.

        Args:
            x (Tensor): unit vectors, shape ``(..., n, p)`` with ``n >= 1``; leading dimensions
                are batch dimensions, fitted independently.
            weights (Tensor, optional): non-negative weights broadcastable to ``(..., n)``, not all
                zero in any batch element; default all 1.
            loc (Tensor, optional): a fixed mean direction, shape broadcastable to ``(..., p)``.
            validate_args (bool, optional): check that ``x`` (and ``loc``) have unit rows, in
                their own dtype, and validate the result (torch's default when None).

        Returns:
            VonMisesFisher: batch shape ``x.shape[:-2]``; ``loc`` in ``x``'s dtype (promoted with a given
            ``loc``'s), the concentration in float32 for half-precision data (whose range stops at 65504).

        Example::

            >>> import torch
            >>> from spherical_dists import VonMisesFisher
            >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # R = 1/sqrt(2)
            >>> q = VonMisesFisher.fit(x)
            >>> q.loc, q.concentration  # A_2(kappa) = I_1 / I_0 = 0.7071
            (tensor([0.7071, 0.7071], dtype=torch.float64), tensor(2.0582, dtype=torch.float64))
            >>> VonMisesFisher.fit(x, loc=torch.tensor([1.0, 0.0], dtype=torch.float64)).concentration  # A_2 = 1/2
            tensor(1.1593, dtype=torch.float64)
        """
        n, dim = check_points(x, validate_args)
        validate = validating(validate_args)
        batch_shape = x.shape[:-2]
        w = check_weights(weights, x).reshape(-1, 1, n)
        x64 = as_float64_directions(x).reshape(-1, n, dim)
        fixed = None
        if loc is not None:
            if not isinstance(loc, Tensor) or not loc.is_floating_point() or loc.shape[-1:] != (dim,):
                raise ValueError(f"loc must be a floating-point tensor of shape (..., {dim}) to fix the mean direction")
            if validate:
                check_unit(loc, "loc")
            try:
                fixed = as_float64_directions(loc).expand(batch_shape + (dim,)).reshape(-1, 1, dim)
            except RuntimeError:
                raise ValueError(
                    f"loc of shape {tuple(loc.shape)} does not broadcast to the batch shape {tuple(batch_shape)} + (p,)"
                ) from None
        loc64, kappa = weighted_fit(x64, w, fixed)
        if torch.isinf(kappa).any():
            where = torch.nonzero(torch.isinf(kappa.reshape(batch_shape))).tolist() if batch_shape else []
            at = f" (batch elements {where[:5]}{', ...' if len(where) > 5 else ''})" if where else ""
            raise ValueError(
                f"the points coincide{at} (to rounding; e.g. a single point), so the maximum-likelihood "
                "concentration is infinite: the likelihood grows without bound towards a point mass. "
                "Fit more than one distinct point."
            )
        dtype = x.dtype if loc is None else torch.promote_types(x.dtype, loc.dtype)
        return cls(
            loc64.reshape(batch_shape + (dim,)).to(dtype),
            kappa.reshape(batch_shape).to(compute_dtype(dtype)),
            validate_args=validate_args,
        )
