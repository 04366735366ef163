"""spherical_dists.pyro inside Pyro: pyro.sample / pyro.plate shapes, and an SVI step with a vMF
guide and a uniform prior (skipped when Pyro is not installed)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("pyro")
import pyro  # noqa: E402
import pyro.infer  # noqa: E402
import pyro.optim  # noqa: E402

from spherical_dists import kl  # noqa: E402, F401  (registers the KL pairs)
from spherical_dists.pyro import HypersphericalUniform, PowerSpherical, SphericalCauchy, VonMisesFisher  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True)
def _clear_param_store():  # type: ignore[no-untyped-def]
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.mark.parametrize(
    "make",
    [
        lambda: VonMisesFisher(torch.tensor([0.0, 0.0, 1.0], dtype=F64), torch.tensor(5.0, dtype=F64)),
        lambda: PowerSpherical(torch.tensor([0.0, 0.0, 1.0], dtype=F64), torch.tensor(5.0, dtype=F64)),
        lambda: SphericalCauchy(torch.tensor([0.0, 0.0, 1.0], dtype=F64), torch.tensor(5.0, dtype=F64)),
        lambda: HypersphericalUniform(3, dtype=F64),
    ],
    ids=["vmf", "power-spherical", "spherical-cauchy", "uniform"],
)
def test_sample_and_plate_shapes(make) -> None:  # type: ignore[no-untyped-def]
    def model() -> torch.Tensor:
        with pyro.plate("data", 7):
            return pyro.sample("z", make().expand((7,)))

    trace = pyro.poutine.trace(model).get_trace()
    trace.compute_log_prob()
    site = trace.nodes["z"]
    assert site["value"].shape == (7, 3) and site["log_prob"].shape == (7,)
    torch.testing.assert_close(site["value"].norm(dim=-1), torch.ones(7, dtype=F64))
    # to_event and expand come from Pyro's mixin.
    assert make().expand((2, 4)).to_event(1).batch_shape == (2,)


def test_svi_step_moves_the_guide() -> None:
    """Observations near e3, z ~ uniform prior on S^2, guide vMF(loc, kappa) with learnable parameters:
    one SVI step (reparameterised ELBO, analytic KL through the registered pair) changes both."""
    data = torch.nn.functional.normalize(torch.tensor([[0.1, 0.0, 1.0], [0.0, 0.1, 1.0]], dtype=F64), dim=-1)

    def model(x: torch.Tensor) -> None:
        z = pyro.sample("z", HypersphericalUniform(3, dtype=F64))
        with pyro.plate("obs", x.shape[0]):
            pyro.sample("x", VonMisesFisher(z.expand(x.shape[0], 3), torch.tensor(10.0, dtype=F64)), obs=x)

    def guide(x: torch.Tensor) -> None:
        loc = pyro.param(
            "loc", torch.tensor([1.0, 0.0, 0.0], dtype=F64), constraint=VonMisesFisher.arg_constraints["loc"]
        )
        kappa = pyro.param(
            "kappa", torch.tensor(1.0, dtype=F64), constraint=VonMisesFisher.arg_constraints["concentration"]
        )
        pyro.sample("z", VonMisesFisher(loc, kappa))

    pyro.set_rng_seed(0)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), loss=pyro.infer.TraceMeanField_ELBO())
    svi.step(data)  # creates the parameters
    store = pyro.get_param_store()
    before = {name: store[name].detach().clone() for name in ("loc", "kappa")}
    loss = svi.step(data)
    assert torch.isfinite(torch.tensor(loss))
    for name, value in before.items():
        assert not torch.equal(store[name].detach(), value), name
    assert torch.allclose(store["loc"].norm(), torch.tensor(1.0, dtype=F64))


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical, SphericalCauchy])
@pytest.mark.parametrize("loc_shape, kappa_shape", [((3,), ()), ((4, 3), (4,)), ((4, 1, 5), (2,)), ((3,), (6,))])
def test_infer_shapes(cls, loc_shape, kappa_shape) -> None:  # type: ignore[no-untyped-def]
    """Pyro's generic check: infer_shapes from the parameters' shapes agrees with the instance."""
    loc = torch.nn.functional.normalize(torch.randn(loc_shape, dtype=F64), dim=-1)
    dist = cls(loc, torch.ones(kappa_shape, dtype=F64))
    assert cls.infer_shapes(loc=loc.shape, concentration=torch.Size(kappa_shape)) == (
        dist.batch_shape,
        dist.event_shape,
    )


def test_uniform_expand_error_in_pyro() -> None:
    with pytest.raises(RuntimeError):
        HypersphericalUniform(3, batch_shape=(2,)).expand((3,))
