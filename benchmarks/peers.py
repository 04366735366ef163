"""One adapter per von Mises-Fisher sampler that ``bench_sampler.py`` measures.

Every adapter draws one sample per row from ``loc`` (``(n, p)`` float32, unit rows) and
``kappa`` (``(n,)`` float32) and returns an ``(n, p)`` array in its own library's type. The
benchmark calls, per adapter:

* :meth:`Peer.load`: import the library (raises :class:`PeerUnavailable` with a note when it is
  not installed, so a missing peer is a skipped column, not a crash);
* :meth:`Peer.prepare`: convert the benchmark's torch inputs to what the library takes (untimed:
  a user already has their inputs in their library's format);
* :meth:`Peer.sample`: the timed call. It builds the distribution object and draws, as a user's
  training step would, with argument validation off everywhere;
* :meth:`Peer.to_numpy`: the result for the sanity check.

Imports happen in ``load`` rather than at module level because the benchmark must fix the
thread count (environment variables, CPU affinity) before JAX/XLA starts its thread pools.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


class PeerUnavailable(RuntimeError):
    """The peer's library is not importable here (or cannot run on the requested device)."""


class Peer:
    """Common interface of the adapters.

    Attributes:
        name: column label in the printed table and key in the JSON.
        is_ours: ``True`` for this package's own rows (excluded from "fastest peer").
        samples_vmf: ``False`` for peers that draw from a different distribution (power-spherical):
            their sanity check compares against their own distribution's mean.
        max_rows: a fixed cap on the rows measured (peers without batched per-row sampling).
        max_dim: largest ``p`` the peer is run at, with ``max_dim_note`` saying why.
        probe: whether to time a handful of rows first to size the measurement (slow peers).
        runs_on: ``"torch"`` (inputs on the benchmark's device), ``"cpu"`` or ``"jax"``.
    """

    name: str = ""
    is_ours: bool = False
    samples_vmf: bool = True
    max_rows: int | None = None
    max_dim: int | None = None
    max_dim_note: str = ""
    probe: bool = False
    runs_on: str = "torch"

    def load(self, device: str) -> None:
        """Import the library; raise :class:`PeerUnavailable` with a note when impossible."""

    def prepare(self, loc: torch.Tensor, kappa: torch.Tensor) -> Any:
        """Convert the benchmark's inputs (untimed)."""
        return loc, kappa

    def sample(self, inputs: Any) -> Any:
        """Draw one sample per row; return once the result is complete (except queued CUDA work,
        which the benchmark times with CUDA events)."""
        raise NotImplementedError

    def to_numpy(self, out: Any) -> np.ndarray:
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)

    def versions(self) -> dict[str, str]:
        """Versions of the libraries this adapter imported (for the JSON)."""
        return {}


def _dist_version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


class SphericalDists(Peer):
    """This package: ``VonMisesFisher(loc, kappa, validate_args=False).sample()``.

    ``backend`` is passed to ``spherical_dists.set_sampler_backend`` before each draw when that
    switch exists (``"auto"``: the Triton kernel on CUDA; ``"torch"``: the pure-torch path).
    Without the switch only the default path can be measured, so the ``"torch"`` variant is
    reported as unavailable rather than silently duplicating the default.
    """

    is_ours = True

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.name = "ours" if backend == "auto" else "ours (pure torch)"
        self._set_backend: Any = None

    def load(self, device: str) -> None:
        try:
            import spherical_dists
        except ImportError as exc:  # pragma: no cover - the benchmark lives in this package's repo
            raise PeerUnavailable(f"spherical_dists is not importable: {exc}") from None
        self._vmf = spherical_dists.VonMisesFisher
        self._set_backend = getattr(spherical_dists, "set_sampler_backend", None)
        self._version = spherical_dists.__version__
        if self.backend != "auto" and self._set_backend is None:
            raise PeerUnavailable(
                "spherical_dists.set_sampler_backend does not exist yet: the default path is the only one"
            )

    def sample(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        loc, kappa = inputs
        if self._set_backend is not None:
            self._set_backend(self.backend)
        with torch.no_grad():
            return self._vmf(loc, kappa, validate_args=False).sample()

    def versions(self) -> dict[str, str]:
        return {"spherical_dists": self._version}


class PowerSphericalPeer(Peer):
    """``power_spherical.PowerSpherical(loc, kappa).rsample()`` (De Cao & Aziz 2020).

    A different distribution, sampled without rejection (a Beta draw and a Householder
    reflection): the speed reference for what a vMF sampler could cost, not a vMF sampler.
    """

    name = "power-spherical"
    samples_vmf = False

    def load(self, device: str) -> None:
        try:
            from power_spherical import PowerSpherical
        except ImportError:
            raise PeerUnavailable("not installed: pip install power-spherical") from None
        self._cls = PowerSpherical

    def sample(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        loc, kappa = inputs
        with torch.no_grad():
            return self._cls(loc, kappa, validate_args=False).rsample()

    def versions(self) -> dict[str, str]:
        return {"power-spherical": _dist_version("power-spherical")}


class SVaePeer(Peer):
    """s-vae-pytorch (Davidson et al. 2018): ``hyperspherical_vae.distributions.VonMisesFisher(loc,
    scale)`` with ``scale`` of shape ``(n, 1)``, ``.sample()``; its default of one proposal per row
    per rejection round. Not on PyPI: ``pip install git+https://github.com/nicola-decao/s-vae-pytorch``.
    """

    name = "s-vae-pytorch"

    def load(self, device: str) -> None:
        try:
            from hyperspherical_vae.distributions import VonMisesFisher
        except ImportError:
            raise PeerUnavailable(
                "not installed: pip install git+https://github.com/nicola-decao/s-vae-pytorch "
                "(or point --peer-path at a checkout)"
            ) from None
        self._cls = VonMisesFisher

    def prepare(self, loc: torch.Tensor, kappa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return loc, kappa.unsqueeze(-1)

    def sample(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        loc, scale = inputs
        return self._cls(loc, scale, validate_args=False).sample()

    def versions(self) -> dict[str, str]:
        import hyperspherical_vae

        return {"hyperspherical_vae_path": str(getattr(hyperspherical_vae, "__file__", "unknown"))}


class TfpJaxPeer(Peer):
    """TensorFlow Probability on JAX: ``tfd.VonMisesFisher(mean_direction, concentration)
    .sample(seed=key)`` inside ``jax.jit``. Compilation happens in the benchmark's untimed warm-up
    call (one compile per input shape); each timed call gets a fresh key (``fold_in`` inside the
    jitted function) and ends with ``block_until_ready``.
    """

    name = "tfp-jax"
    runs_on = "jax"

    def load(self, device: str) -> None:
        try:
            import jax
            import tensorflow_probability.substrates.jax as tfp
        except ImportError as exc:
            raise PeerUnavailable(
                f"not installed ({exc.name}): pip install jax tfp-nightly (see benchmarks/README.md)"
            ) from None
        want = "gpu" if device == "cuda" else "cpu"
        if jax.default_backend() != want:
            raise PeerUnavailable(f"jax's backend is {jax.default_backend()!r}, not {want!r}")
        tfd = tfp.distributions
        self._jax = jax
        self._tfp_version = tfp.__version__

        def draw(loc: Any, kappa: Any, key: Any, counter: Any) -> Any:
            dist = tfd.VonMisesFisher(mean_direction=loc, concentration=kappa)
            return dist.sample(seed=jax.random.fold_in(key, counter))

        self._draw = jax.jit(draw)
        self._key = jax.random.PRNGKey(0)
        self._counter = 0

    def prepare(self, loc: torch.Tensor, kappa: torch.Tensor) -> tuple[Any, Any]:
        jnp = self._jax.numpy
        return jnp.asarray(loc.cpu().numpy()), jnp.asarray(kappa.cpu().numpy())

    def sample(self, inputs: tuple[Any, Any]) -> Any:
        loc, kappa = inputs
        self._counter += 1
        return self._draw(loc, kappa, self._key, self._counter).block_until_ready()

    def to_numpy(self, out: Any) -> np.ndarray:
        return np.asarray(out)

    def versions(self) -> dict[str, str]:
        import jaxlib

        return {"jax": self._jax.__version__, "jaxlib": jaxlib.__version__, "tfp": self._tfp_version}


class ScipyPeer(Peer):
    """``scipy.stats.vonmises_fisher.rvs(mu, kappa, random_state=rng)`` in a Python loop over rows.

    scipy takes one ``mu`` per call, so one draw per row with distinct ``loc`` is one call per row.
    Each call builds a ``p x p`` rotation with a QR decomposition (O(p^3)), so the measurement is
    capped to a few hundred rows and skipped for large ``p``.
    """

    name = "scipy"
    runs_on = "cpu"
    max_rows = 256
    max_dim = 2048
    max_dim_note = "scipy builds a p x p rotation by QR per call (O(p^3), 2 GB at p = 16384)"
    probe = True

    def load(self, device: str) -> None:
        try:
            import scipy
            from scipy.stats import vonmises_fisher
        except ImportError:
            raise PeerUnavailable("not installed: pip install scipy") from None
        self._vmf = vonmises_fisher
        self._version = scipy.__version__
        self._rng = np.random.default_rng(0)

    def prepare(self, loc: torch.Tensor, kappa: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        # scipy checks |mu| = 1 to np.allclose's tolerance; renormalising in float64 is what a user does.
        mu = loc.detach().cpu().double().numpy()
        return mu / np.linalg.norm(mu, axis=1, keepdims=True), kappa.detach().cpu().double().numpy()

    def sample(self, inputs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mu, kappa = inputs
        out = np.empty(mu.shape, dtype=np.float32)
        for i in range(mu.shape[0]):
            out[i] = self._vmf.rvs(mu[i], kappa[i], size=1, random_state=self._rng)[0]
        return out

    def versions(self) -> dict[str, str]:
        return {"scipy": self._version}


def all_peers() -> list[Peer]:
    """Every adapter, in the order of the table's columns."""
    return [
        SphericalDists("auto"),
        SphericalDists("torch"),
        PowerSphericalPeer(),
        TfpJaxPeer(),
        SVaePeer(),
        ScipyPeer(),
    ]


def expected_w(peer: Peer, p: int, kappa: float) -> tuple[float, float]:
    """Mean and variance of ``w = mu^T z`` for one draw of ``peer``'s distribution.

    vMF: ``E w = A_p(kappa)`` and ``Var w = 1 - (p - 1) A / kappa - A^2`` (Mardia & Jupp 2000,
    9.3.9), with ``A`` from ``spherical_dists.special``. Power spherical: ``w = 2B - 1`` with
    ``B ~ Beta((p - 1)/2 + kappa, (p - 1)/2)``.
    """
    if not peer.samples_vmf:
        a, b = (p - 1) / 2 + kappa, (p - 1) / 2
        return (a - b) / (a + b), 4 * a * b / ((a + b) ** 2 * (a + b + 1))
    from spherical_dists.special import vmf_mean_resultant_length

    mean = float(vmf_mean_resultant_length(p, torch.tensor(kappa, dtype=torch.float64)))
    var = 1.0 - (p - 1) * mean / kappa - mean**2 if kappa > 0 else 1.0 / p
    return mean, max(var, 0.0)


def sanity(peer: Peer, loc: torch.Tensor, out: np.ndarray, kappa: float) -> dict[str, float]:
    """How far the mean of ``mu^T z`` over the rows is from its expectation, in standard errors
    (``z_score``), and the largest deviation of a row's norm from 1."""
    rows = out.shape[0]
    mu = loc[:rows].double().numpy()
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    z = out.astype(np.float64)
    w = np.einsum("ij,ij->i", mu, z)
    mean, var = expected_w(peer, loc.shape[1], kappa)
    std_err = math.sqrt(var / rows)
    observed = float(w.mean())
    return {
        "mean_w": observed,
        "expected_mean_w": mean,
        "z_score": (observed - mean) / std_err if std_err > 0 else math.nan,
        "max_norm_error": float(np.abs(np.linalg.norm(z, axis=1) - 1.0).max()),
        "finite": bool(np.isfinite(z).all()),
    }
