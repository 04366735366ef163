"""Generic checks modelled on torch's own test_distributions, run over every example below
(including the edge cases: kappa = 0, huge kappa, loc = +-e1, p = 2, 3 and 65,536), for the von
Mises-Fisher, power spherical and uniform distributions."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable

import pytest
import torch
from torch.distributions import Distribution, Independent, constraints, kl_divergence, transform_to

from spherical_dists import HypersphericalUniform, PowerSpherical, SphericalCauchy, VonMisesFisher
from spherical_dists.constraints import sphere

F64 = torch.float64


@pytest.fixture(autouse=True)
def _validate_args():
    """torch.compile switches argument validation off for the whole process: restore it."""
    Distribution.set_default_validate_args(True)
    yield
    Distribution.set_default_validate_args(True)


def _unit(*shape: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(*shape, dtype=dtype), dim=-1)


def _e1(p: int, sign: float = 1.0, dtype: torch.dtype = F64) -> torch.Tensor:
    out = torch.zeros(p, dtype=dtype)
    out[0] = sign
    return out


# (name, factory); factories take a requires_grad flag for the parameters.
EXAMPLES: list[tuple[str, Callable[[bool], Distribution]]] = [
    (
        "vmf p=3 scalar",
        lambda g: VonMisesFisher(_unit(3).requires_grad_(g), torch.tensor(2.0, dtype=F64, requires_grad=g)),
    ),
    (
        "vmf p=2 batch",
        lambda g: VonMisesFisher(
            _unit(4, 2).requires_grad_(g), torch.tensor([0.0, 0.5, 8.0, 300.0], dtype=F64, requires_grad=g)
        ),
    ),
    (
        "vmf p=5 broadcast kappa",
        lambda g: VonMisesFisher(
            _unit(2, 3, 5).requires_grad_(g), torch.tensor([1.0, 20.0, 1e3], dtype=F64, requires_grad=g)
        ),
    ),
    (
        "vmf kappa=0",
        lambda g: VonMisesFisher(_unit(3, 7).requires_grad_(g), torch.zeros(3, dtype=F64, requires_grad=g)),
    ),
    (
        "vmf kappa=1e8 float32",
        lambda g: VonMisesFisher(
            _unit(2, 10, dtype=torch.float32).requires_grad_(g), torch.tensor(1e8, requires_grad=g)
        ),
    ),
    ("vmf loc=+e1", lambda g: VonMisesFisher(_e1(4).requires_grad_(g), torch.tensor(5.0, dtype=F64, requires_grad=g))),
    (
        "vmf loc=-e1 p=3",
        lambda g: VonMisesFisher(_e1(3, -1.0).requires_grad_(g), torch.tensor(50.0, dtype=F64, requires_grad=g)),
    ),
    (
        "vmf p=65536",
        lambda g: VonMisesFisher(
            _unit(2, 65536, dtype=torch.float32).requires_grad_(g), torch.tensor([10.0, 1e5], requires_grad=g)
        ),
    ),
    (
        "ps p=3 scalar",
        lambda g: PowerSpherical(_unit(3).requires_grad_(g), torch.tensor(2.0, dtype=F64, requires_grad=g)),
    ),
    (
        "ps p=2 batch",
        lambda g: PowerSpherical(
            _unit(4, 2).requires_grad_(g), torch.tensor([0.0, 0.5, 8.0, 300.0], dtype=F64, requires_grad=g)
        ),
    ),
    (
        "ps kappa=0",
        lambda g: PowerSpherical(_unit(3, 7).requires_grad_(g), torch.zeros(3, dtype=F64, requires_grad=g)),
    ),
    (
        "ps kappa=1e8 float32",
        lambda g: PowerSpherical(
            _unit(2, 10, dtype=torch.float32).requires_grad_(g), torch.tensor(1e8, requires_grad=g)
        ),
    ),
    ("ps loc=+e1", lambda g: PowerSpherical(_e1(4).requires_grad_(g), torch.tensor(5.0, dtype=F64, requires_grad=g))),
    (
        "ps loc=-e1 p=3",
        lambda g: PowerSpherical(_e1(3, -1.0).requires_grad_(g), torch.tensor(50.0, dtype=F64, requires_grad=g)),
    ),
    (
        "ps p=65536",
        lambda g: PowerSpherical(
            _unit(2, 65536, dtype=torch.float32).requires_grad_(g), torch.tensor([10.0, 1e5], requires_grad=g)
        ),
    ),
    ("uniform p=3", lambda g: HypersphericalUniform(3, dtype=F64)),
    ("uniform p=2 batch", lambda g: HypersphericalUniform(2, batch_shape=(4,), dtype=F64)),
    ("uniform p=100 float32", lambda g: HypersphericalUniform(100, batch_shape=(2, 3))),
]
IDS = [name for name, _ in EXAMPLES]


@pytest.fixture(params=EXAMPLES, ids=IDS)
def factory(request) -> Callable[[bool], Distribution]:  # type: ignore[no-untyped-def]
    return request.param[1]


def _params(dist: Distribution) -> list[torch.Tensor]:
    return [getattr(dist, name) for name in dist.arg_constraints]


def test_repr(factory) -> None:  # type: ignore[no-untyped-def]
    dist = factory(False)
    text = repr(dist)
    assert text.startswith(type(dist).__name__ + "(")


def test_shapes_and_support(factory) -> None:  # type: ignore[no-untyped-def]
    dist = factory(False)
    assert dist.support.event_dim == len(dist.event_shape) == 1
    for sample_shape in [(), (2,), (3, 1)]:
        x = dist.sample(sample_shape)
        assert x.shape == torch.Size(sample_shape) + dist.batch_shape + dist.event_shape
        assert dist.support.check(x).all()
        assert dist.log_prob(x).shape == torch.Size(sample_shape) + dist.batch_shape
    assert dist.entropy().shape == dist.batch_shape
    assert dist.mean.shape == dist.batch_shape + dist.event_shape
    assert dist.variance.shape == dist.batch_shape + dist.event_shape


def test_sample_detached_and_rsample_requires_grad(factory) -> None:  # type: ignore[no-untyped-def]
    dist = factory(True)
    assert not dist.sample().requires_grad
    needs_grad = any(p.requires_grad for p in _params(dist))
    assert dist.rsample().requires_grad == needs_grad


def test_params_satisfy_constraints(factory) -> None:  # type: ignore[no-untyped-def]
    dist = factory(False)
    for name, constraint in dist.arg_constraints.items():
        value = getattr(dist, name)
        assert constraints.is_dependent(constraint) or constraint.check(value).all(), name


@pytest.mark.parametrize("new_shape", [(), (2,), (2, 1)])
def test_expand(factory, new_shape) -> None:  # type: ignore[no-untyped-def]
    dist = factory(False)
    target = torch.Size(new_shape) + dist.batch_shape
    expanded = dist.expand(target)
    assert expanded.batch_shape == target and expanded.event_shape == dist.event_shape
    x = expanded.sample()
    assert x.shape == target + dist.event_shape
    torch.testing.assert_close(expanded.log_prob(x), dist.log_prob(x))
    torch.testing.assert_close(expanded.entropy(), dist.entropy().expand(target))


def test_subclass_expand(factory) -> None:  # type: ignore[no-untyped-def]
    dist = factory(False)
    subclass = type("Sub" + type(dist).__name__, (type(dist),), {})
    shape = (2,) + tuple(dist.batch_shape)
    expanded = dist.expand(shape, _instance=subclass.__new__(subclass))
    assert isinstance(expanded, subclass) and expanded.batch_shape == shape


def test_independent(factory) -> None:  # type: ignore[no-untyped-def]
    dist = factory(False)
    if not dist.batch_shape:
        return
    ind = Independent(dist, 1)
    assert ind.batch_shape == dist.batch_shape[:-1]
    assert ind.event_shape == dist.batch_shape[-1:] + dist.event_shape
    x = ind.sample((3,))
    torch.testing.assert_close(ind.log_prob(x), dist.log_prob(x).sum(-1))
    assert ind.expand((2,) + tuple(ind.batch_shape)).batch_shape == (2,) + tuple(ind.batch_shape)


def test_mode_is_most_likely(factory) -> None:  # type: ignore[no-untyped-def]
    dist = factory(False)
    if isinstance(dist, HypersphericalUniform):
        assert dist.mode.isnan().all()  # every point is a mode
        return
    x = dist.sample((20,))
    assert (dist.log_prob(dist.mode) >= dist.log_prob(x) - 1e-3 * dist.log_prob(x).abs().clamp(min=1)).all()


def test_kl_shapes_and_no_ambiguity_warning(factory) -> None:  # type: ignore[no-untyped-def]
    dist = factory(False)
    p = dist.event_shape[0]
    others = [HypersphericalUniform(p, batch_shape=dist.batch_shape, dtype=dist.mean.dtype)]
    if isinstance(dist, VonMisesFisher):
        others.append(VonMisesFisher(dist.loc.flip(-1), dist.concentration * 0.5 + 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for other in others:
            assert kl_divergence(dist, other).shape == dist.batch_shape
            assert kl_divergence(other, dist).shape == dist.batch_shape
        if isinstance(dist, PowerSpherical):
            # Only KL(PS || vMF) has a closed form; the other directions stay unregistered.
            vmf = VonMisesFisher(dist.loc.flip(-1), dist.concentration * 0.5 + 1.0)
            assert kl_divergence(dist, vmf).shape == dist.batch_shape
            for a, b in ((vmf, dist), (dist, PowerSpherical(dist.loc.flip(-1), dist.concentration))):
                with pytest.raises(NotImplementedError):
                    kl_divergence(a, b)


def test_nan_value_rejected(factory) -> None:  # type: ignore[no-untyped-def]
    dist = factory(False)
    value = dist.sample()
    value = value.clone()
    value[..., 0] = math.nan
    with pytest.raises(ValueError):
        dist.log_prob(value)


def test_value_off_sphere_rejected(factory) -> None:  # type: ignore[no-untyped-def]
    dist = factory(False)
    with pytest.raises(ValueError, match="support"):
        dist.log_prob(2.0 * dist.sample())


def test_no_validation_when_disabled() -> None:
    dist = VonMisesFisher(_unit(3), torch.tensor(1.0, dtype=F64), validate_args=False)
    assert torch.isfinite(dist.log_prob(2.0 * _unit(3)))


# ------------------------------------------------------------------ invalid arguments


@pytest.mark.parametrize(
    "loc, kappa, match",
    [
        (torch.tensor([1.0, 1.0, 0.0]), 1.0, "loc"),
        (_unit(3), -1.0, "concentration"),
        (_unit(3), math.nan, "concentration"),
        (_unit(3), math.inf, "concentration"),
        (torch.tensor([1.0]), 1.0, "p >= 2"),
        (_unit(2, 3), torch.ones(3), "do not broadcast"),
        (torch.tensor([1, 0, 0]), 1.0, "floating-point"),
    ],
)
@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical, SphericalCauchy])
def test_invalid_arguments(loc, kappa, match, cls) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        cls(loc, torch.as_tensor(kappa) if not isinstance(kappa, torch.Tensor) else kappa)


def test_power_spherical_repr_and_no_validation_when_disabled() -> None:
    dist = PowerSpherical(_unit(2, 3), torch.tensor([1.0, 2.0], dtype=F64), validate_args=False)
    assert repr(dist) == "PowerSpherical(loc: torch.Size([2, 3]), concentration: torch.Size([2]))"
    assert dist.log_prob(2.0 * _unit(3)).shape == (2,)  # off the support: no error, no NaN
    assert not dist.log_prob(2.0 * _unit(3)).isnan().any()


def test_unit_norm_tolerance_scales_with_dtype_and_dim() -> None:
    for dtype, p in itertools.product((torch.float32, F64), (3, 4096)):
        eps = torch.finfo(dtype).eps
        loc = _unit(p, dtype=dtype) * (1 + 2 * eps)  # a rounding error or two: accepted
        VonMisesFisher(loc, torch.tensor(1.0, dtype=dtype))
        with pytest.raises(ValueError, match="loc"):
            VonMisesFisher(_unit(p, dtype=dtype) * (1 + 1e-3), torch.tensor(1.0, dtype=dtype))


@pytest.mark.parametrize("dim", [1, 0, 2.5, True])
def test_uniform_rejects_bad_dim(dim) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="dim"):
        HypersphericalUniform(dim)


def test_kl_between_different_dimensions_raises() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        kl_divergence(VonMisesFisher(_unit(3), torch.tensor(1.0, dtype=F64)), HypersphericalUniform(4))


def test_sampler_terminates_without_validation_for_any_kappa() -> None:
    """Every loop is bounded: even absurd concentrations return (validation off)."""
    kappa = torch.tensor([0.0, 1e-300, 1e300], dtype=F64)
    z = VonMisesFisher(_unit(3, 4), kappa, validate_args=False).sample()
    assert torch.isfinite(z).all()


# ------------------------------------------------------------------ constraints


def test_transform_to_sphere() -> None:
    t = transform_to(sphere)
    x = torch.randn(5, 4, dtype=F64)
    y = t(x)
    assert sphere.check(y).all()
    torch.testing.assert_close(t(t.inv(y)), y)


def test_transform_to_concentration_constraint() -> None:
    t = transform_to(VonMisesFisher.arg_constraints["concentration"])
    assert VonMisesFisher.arg_constraints["concentration"].check(t(torch.randn(10))).all()


# ------------------------------------------------------------------ dtypes, devices, transforms


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical, SphericalCauchy])
@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.float16, torch.bfloat16])
def test_dtypes(dtype, cls) -> None:  # type: ignore[no-untyped-def]
    loc = _unit(6, 5).to(dtype)
    loc = loc / loc.float().norm(dim=-1, keepdim=True).to(dtype)
    dist = cls(loc, torch.tensor(10.0, dtype=dtype))
    z = dist.sample()
    assert z.dtype == dtype
    assert dist.log_prob(z).dtype == dtype
    assert torch.isfinite(dist.log_prob(z).float()).all()


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical, SphericalCauchy])
def test_reproducible_with_seed_and_generator(cls) -> None:  # type: ignore[no-untyped-def]
    dist = cls(_unit(4, 7), torch.tensor([0.0, 1.0, 50.0, 1e6], dtype=F64))
    torch.manual_seed(3)
    a = dist.sample((5,))
    torch.manual_seed(3)
    b = dist.sample((5,))
    assert torch.equal(a, b)
    c = dist.sample((5,), generator=torch.Generator().manual_seed(11))
    d = dist.sample((5,), generator=torch.Generator().manual_seed(11))
    assert torch.equal(c, d) and not torch.equal(a, c)


@pytest.mark.slow
@pytest.mark.parametrize("p", [2, 3, 6])
def test_rsample_and_sample_compile_fullgraph(p: int) -> None:
    """Both draws compile without graph breaks, also once torch.compile has made the batch size
    dynamic (a second call with another size recompiles with symbolic shapes)."""

    def draw(loc: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
        return VonMisesFisher(loc, kappa, validate_args=False).rsample((8,))

    def draw_no_grad(loc: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
        return VonMisesFisher(loc, kappa, validate_args=False).sample((8,))

    compiled = torch.compile(draw, fullgraph=True, backend="aot_eager")
    compiled_no_grad = torch.compile(draw_no_grad, fullgraph=True, backend="aot_eager")
    for n in (3, 5):
        loc = _unit(n, p, dtype=torch.float32).requires_grad_()
        kappa = torch.tensor([1.0, 30.0, 1e4, 0.0, 5.0][:n], requires_grad=True)
        z = compiled(loc, kappa)
        assert z.shape == (8, n, p)
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(8, n))
        z.sum().backward()
        assert torch.isfinite(kappa.grad).all() and torch.isfinite(loc.grad).all()
        z = compiled_no_grad(loc.detach(), kappa.detach())
        assert z.shape == (8, n, p) and not z.requires_grad
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(8, n))


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical, SphericalCauchy])
def test_log_prob_under_vmap(cls) -> None:  # type: ignore[no-untyped-def]
    loc, kappa = _unit(3, 5), torch.tensor([0.5, 5.0, 50.0], dtype=F64)
    dist = cls(loc, kappa, validate_args=False)
    z = dist.sample((7,))
    batched = torch.func.vmap(dist.log_prob)(z)
    torch.testing.assert_close(batched, dist.log_prob(z))


def test_fixed_kappa_takes_no_quadrature(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Without requires_grad on the concentration, the implicit gradient is never computed."""
    from spherical_dists import _marginal

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("quadrature called")

    monkeypatch.setattr(_marginal, "kappa_derivative", boom)
    loc = _unit(4, 8).requires_grad_()
    VonMisesFisher(loc, torch.tensor(10.0, dtype=F64)).rsample().sum().backward()
    assert loc.grad is not None


# ------------------------------------------------------------------ targeted errors for ported code


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical, SphericalCauchy])
def test_trailing_singleton_concentration_is_refused(cls) -> None:  # type: ignore[no-untyped-def]
    """s-vae-pytorch heads output a (B, 1) concentration: next to a (B, p) loc it
    would silently broadcast to a (B, B) batch (samples and KL of shape (B, B, ...))."""
    loc, kappa = _unit(8, 5), torch.rand(8, 1, dtype=F64) + 1.0
    with pytest.raises(ValueError, match=r"\(8, 1\).*\(8, 8\).*squeeze\(-1\)"):
        cls(loc, kappa)
    assert cls(loc, kappa.squeeze(-1)).batch_shape == (8,)
    # Legitimate broadcasting still works: a grid made on purpose, one kappa per row, a shared kappa.
    assert cls(loc.expand(8, 8, 5), kappa).batch_shape == (8, 8)
    assert cls(_unit(5), kappa).batch_shape == (8, 1)
    assert cls(loc, torch.rand(3, 1, dtype=F64)).batch_shape == (3, 8)
    assert cls(_unit(1, 5), torch.ones(1, 1, dtype=F64)).batch_shape == (1, 1)


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical, SphericalCauchy])
def test_scale_keyword_gets_a_targeted_message(cls) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match=r"no argument 'scale'.*concentration"):
        cls(_unit(3), scale=torch.tensor(2.0, dtype=F64))
    with pytest.raises(TypeError, match="unexpected keyword"):
        cls(_unit(3), torch.tensor(2.0, dtype=F64), bogus=1)


def test_non_unit_loc_error_says_how_far_and_which_tolerance() -> None:
    loc = _unit(3) * (1 + 1e-6)
    with pytest.raises(ValueError, match=r"1e-06.*float64 tolerance 6.\d+e-15.*normalize"):
        VonMisesFisher(loc, torch.tensor(1.0, dtype=F64))


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical, SphericalCauchy])
def test_loc_is_validated_in_the_dtype_given(cls) -> None:  # type: ignore[no-untyped-def]
    """A float32 unit vector is valid with a float64 concentration (it used to be judged by float64's
    tolerance after promotion: 200 of 200 random ones failed); it is renormalised in float64, so
    that samples and densities are exact there."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        loc = torch.nn.functional.normalize(torch.randn(16, generator=gen), dim=-1)
        dist = cls(loc, torch.tensor(50.0, dtype=F64))
        assert dist.loc.dtype == F64 and sphere.check(dist.loc).all()
        torch.testing.assert_close(dist.loc, loc.double(), rtol=0, atol=1e-6)
    dist.log_prob(dist.sample((3,)))  # validated in float64


def test_readme_snippet_under_bfloat16_autocast() -> None:
    torch.manual_seed(0)
    encoder = torch.nn.Linear(784, 2 * 16)
    x = torch.rand(32, 784)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mu, _ = encoder(x).chunk(2, dim=-1)
        q = VonMisesFisher(torch.nn.functional.normalize(mu, dim=-1), torch.tensor(50.0))
        z = q.rsample()
        kl = kl_divergence(q, HypersphericalUniform(16))
    assert mu.dtype == torch.bfloat16 and q.loc.dtype == torch.float32 and z.shape == (32, 16)
    assert torch.isfinite(kl).all()


def test_half_precision_loc_with_a_large_python_concentration() -> None:
    loc = _unit(4).half()
    dist = VonMisesFisher(loc, 1e5)
    assert dist.concentration.dtype == torch.float32 and dist.concentration.item() == 1e5
    z = dist.sample((4,))
    assert z.dtype == torch.float16 and torch.isfinite(z).all()
    assert torch.isfinite(dist.log_prob(z)).all()


def test_uniform_expand_to_an_incompatible_shape_raises_like_torch() -> None:
    with pytest.raises(RuntimeError, match=r"\(2,\) to \(3,\)"):
        HypersphericalUniform(3, batch_shape=(2,)).expand((3,))
    assert HypersphericalUniform(3, batch_shape=(2,)).expand((4, 2)).batch_shape == (4, 2)
    assert HypersphericalUniform(3, batch_shape=(1,)).expand((5,)).batch_shape == (5,)


def test_uniform_takes_numpy_dims_and_refuses_integer_dtypes() -> None:
    np = pytest.importorskip("numpy")
    assert HypersphericalUniform(np.int64(3)).event_shape == (3,)
    with pytest.raises(ValueError, match="floating-point dtype"):
        HypersphericalUniform(3, dtype=torch.int64)
