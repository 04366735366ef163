"""The package's distributions for Pyro (optional: ``pip install spherical-dists[pyro]``).

Each class is the ``torch.distributions`` one mixed with Pyro's ``TorchDistributionMixin``, so that
it works inside ``pyro.sample`` and ``pyro.plate`` (``.to_event``, ``.expand``, shape checks) and
in SVI guides. KL divergences registered for the base classes apply to these too.

Example (run only where Pyro is installed)::

    import pyro
    import torch
    from spherical_dists.pyro import HypersphericalUniform, VonMisesFisher

    def model():
        with pyro.plate("data", 10):
            return pyro.sample("z", HypersphericalUniform(3, batch_shape=(10,)))
"""

from __future__ import annotations

try:
    from pyro.distributions.torch_distribution import TorchDistributionMixin
except ImportError as error:  # pragma: no cover - exercised only without pyro
    raise ImportError(
        "spherical_dists.pyro needs Pyro: install it with `pip install spherical-dists[pyro]` "
        "(or `pip install pyro-ppl`)"
    ) from error

import torch

from . import hyperspherical_uniform, power_spherical, spherical_cauchy, von_mises_fisher

__all__ = ["VonMisesFisher", "HypersphericalUniform", "PowerSpherical", "SphericalCauchy"]


class _DirectionalShapes:
    @classmethod
    def infer_shapes(cls, **arg_shapes: torch.Size) -> tuple[torch.Size, torch.Size]:
        """``(batch_shape, event_shape)`` from the shapes of ``loc`` ``(..., p)`` and ``concentration``:
        Pyro's default reads ``event_shape = ()`` off the constraints, but the event is ``(p,)``."""
        loc, concentration = arg_shapes["loc"], arg_shapes["concentration"]
        return torch.broadcast_shapes(loc[:-1], concentration), torch.Size(loc[-1:])


# Pyro's mixin declares expand() -> ExpandedDistribution; the torch classes' expand, which comes first in
# the MRO and is what runs, returns the class itself (as torch's own distributions do inside Pyro).
class VonMisesFisher(_DirectionalShapes, von_mises_fisher.VonMisesFisher, TorchDistributionMixin):  # type: ignore[misc]
    """:class:`spherical_dists.VonMisesFisher` for Pyro."""


class HypersphericalUniform(hyperspherical_uniform.HypersphericalUniform, TorchDistributionMixin):  # type: ignore[misc]
    """:class:`spherical_dists.HypersphericalUniform` for Pyro."""


class PowerSpherical(_DirectionalShapes, power_spherical.PowerSpherical, TorchDistributionMixin):  # type: ignore[misc]
    """:class:`spherical_dists.PowerSpherical` for Pyro."""


class SphericalCauchy(_DirectionalShapes, spherical_cauchy.SphericalCauchy, TorchDistributionMixin):  # type: ignore[misc]
    """:class:`spherical_dists.SphericalCauchy` for Pyro."""
