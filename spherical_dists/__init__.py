"""Directional distributions on the unit hypersphere for PyTorch.

* :class:`VonMisesFisher` and :class:`HypersphericalUniform`, ``torch.distributions``-compatible,
  with :func:`torch.distributions.kl_divergence` registered for every pair;
* :class:`PowerSpherical` (De Cao & Aziz 2020), the same conventions with a rejection-free sampler;
* :class:`SphericalCauchy` (Kato & McCullagh 2020), the same conventions, sampled exactly as a Möbius
  image of a uniform point;
* :meth:`VonMisesFisher.fit` (maximum likelihood) and :func:`fit_vmf_mixture` (EM for a mixture);
* :mod:`spherical_dists.special`: log-Bessel functions and the vMF normaliser, exact in float64;
* :mod:`spherical_dists.constraints`: the ``sphere`` support and its ``transform_to``.
* :mod:`spherical_dists.testing` (needs mpmath, not imported here): high-precision references
  to check an implementation against.
"""

from . import constraints, kl, mixture, special
from ._sampling import get_sampler_backend, set_sampler_backend
from .hyperspherical_uniform import HypersphericalUniform
from .mixture import VonMisesFisherMixtureFit, fit_vmf_mixture
from .power_spherical import PowerSpherical
from .spherical_cauchy import SphericalCauchy
from .von_mises_fisher import VonMisesFisher

__version__ = "0.2.0"

__all__ = [
    "VonMisesFisher",
    "HypersphericalUniform",
    "PowerSpherical",
    "SphericalCauchy",
    "fit_vmf_mixture",
    "VonMisesFisherMixtureFit",
    "set_sampler_backend",
    "get_sampler_backend",
    "constraints",
    "kl",
    "mixture",
    "special",
    "__version__",
]
