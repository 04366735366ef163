"""Latent variables and the NVDM document model."""

from __future__ import annotations

import math

import pytest
import torch
from textvae.latents import GaussianLatent, make_latent
from textvae.nvdm_model import NVDM, NVDMConfig

try:
    from spherical_dists import VonMisesFisher  # noqa: F401

    HAS_VMF = True
except ImportError:
    HAS_VMF = False
requires_vmf = pytest.mark.skipif(not HAS_VMF, reason="spherical_dists.VonMisesFisher is not available yet")


def test_gaussian_kl_matches_the_closed_form() -> None:
    latent = GaussianLatent(3, 2)
    with torch.no_grad():
        latent.loc.weight.zero_()
        latent.loc.bias.copy_(torch.tensor([1.0, -2.0]))
        latent.log_scale.bias.copy_(torch.tensor([math.log(0.5), math.log(2.0)]))
    q = latent(torch.randn(4, 3))
    # KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1) / 2 - log s, summed over dimensions.
    expected = (0.25 + 1 - 1) / 2 - math.log(0.5) + (4 + 4 - 1) / 2 - math.log(2.0)
    assert torch.allclose(latent.kl(q), torch.full((4,), expected))
    assert torch.equal(latent.mean(q), torch.tensor([[1.0, -2.0]]).expand(4, 2))


def test_gaussian_posterior_starts_with_unit_scale() -> None:
    q = GaussianLatent(5, 3)(torch.randn(2, 5))
    assert torch.equal(q.stddev, torch.ones(2, 3))


def test_make_latent_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown latent"):
        make_latent("cauchy", 4, 2)
    with pytest.raises(ValueError, match="vmf latent only"):
        make_latent("gaussian", 4, 2, learn_kappa=True)
    with pytest.raises(ValueError, match="at least 2"):
        make_latent("gaussian", 4, 1)


def test_nvdm_likelihood_is_the_sum_of_count_weighted_word_log_probabilities() -> None:
    word_log_freq = torch.tensor([0.5, 0.25, 0.25]).log()
    model = NVDM(NVDMConfig(latent_dim=2, hidden=4), vocab_size=3, word_log_freq=word_log_freq)
    with torch.no_grad():
        model.decoder[-1].weight.zero_()  # p(w | z) is then the bias's softmax, whatever z
    x = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    z = torch.randn(5, 2, 2)
    expected = torch.tensor([2 * math.log(0.5) + math.log(0.25), 3 * math.log(0.25)])
    assert torch.allclose(model.log_likelihood(x, z), expected.expand(5, 2))
    terms = model(x, n_samples=3)
    assert torch.allclose(terms.recon, -expected)
    assert terms.n_tokens.tolist() == [3.0, 3.0]
    assert terms.kl.shape == (2,) and bool((terms.kl >= 0).all())


def test_nvdm_architecture_options() -> None:
    model = NVDM(NVDMConfig(latent_dim=4, hidden=8, encoder_layers=3, decoder_hidden=6, dropout=0.1), vocab_size=10)
    assert sum(isinstance(m, torch.nn.Tanh) for m in model.encoder) == 3
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [6, 10]
    weights = model.log_importance_weights(torch.ones(3, 10), n_samples=4)
    assert weights.shape == (4, 3) and bool(torch.isfinite(weights).all())


def test_nvdm_paper_code_architecture_is_that_of_the_original_code() -> None:
    """NVLL/model/nvdm.py at jiacheng-xu/vmf_vae_nlp@6ee2071: Linear, dropout, tanh, Linear (no tanh), the
    latent's head; dropout on the decoder's logits; PyTorch's default output bias."""
    config = NVDMConfig(latent_dim=4, hidden=8, dropout=0.5, architecture="paper-code")
    torch.manual_seed(0)
    model = NVDM(config, vocab_size=10, word_log_freq=torch.full((10,), -2.3))
    kinds = [type(m).__name__ for m in model.encoder]
    assert kinds == ["CountLinear", "Dropout", "Tanh", "Linear"]
    assert model.decoder[-1].bias.abs().max() <= 1 / math.sqrt(4)  # nn.Linear's default, not the log frequencies
    x, z = torch.ones(3, 10), torch.randn(2, 3, 4)
    model.train()
    torch.manual_seed(1)
    first = model.log_likelihood(x, z)
    assert not torch.equal(first, model.log_likelihood(x, z))  # the logits' dropout draws a new mask
    model.eval()
    logits = model.decoder(z)
    assert torch.equal(model.log_likelihood(x, z), (torch.log_softmax(logits, -1) * x).sum(-1))
    miao = NVDM(NVDMConfig(latent_dim=4, hidden=8, dropout=0.5), vocab_size=10, word_log_freq=torch.full((10,), -2.3))
    assert [type(m).__name__ for m in miao.encoder][-2:] == ["Tanh", "Dropout"]
    assert torch.equal(miao.decoder[-1].bias, torch.full((10,), -2.3))
    miao.train()
    assert torch.equal(miao.log_likelihood(x, z), miao.log_likelihood(x, z))  # no dropout after the encoder


def test_count_layer_is_the_dense_affine_map_of_the_counts() -> None:
    from textvae.nvdm_model import CountLinear

    torch.manual_seed(0)
    layer = CountLinear(vocab_size=30, width=7).double()
    counts = torch.poisson(torch.full((5, 30), 0.3, dtype=torch.float64))
    counts[2] = 0.0  # an empty document maps to the bias
    out = layer(counts)
    dense = counts @ layer.weight + layer.bias
    assert torch.allclose(out, dense, rtol=1e-12, atol=1e-12)
    assert torch.equal(out[2], layer.bias.detach())
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (layer.weight, layer.bias), grad_out)
    expected = torch.autograd.grad(dense, (layer.weight, layer.bias), grad_out)
    for g, e in zip(grads, expected, strict=True):
        assert torch.allclose(g, e, rtol=1e-12, atol=1e-12)


def _vmf_kl_to_uniform(p: int, kappa: float) -> float:
    """KL(vMF || uniform) = kappa A_p + log C_p + log |S^{p-1}|, from the package's special functions."""
    from spherical_dists.special import vmf_log_normalizer, vmf_mean_resultant_length

    k = torch.tensor(kappa, dtype=torch.float64)
    log_area = math.log(2) + p / 2 * math.log(math.pi) - math.lgamma(p / 2)
    return float(k * vmf_mean_resultant_length(p, k) + vmf_log_normalizer(p, k)) + log_area


@requires_vmf
def test_vmf_latent_fixed_kappa() -> None:
    p, kappa = 5, 20.0
    latent = make_latent("vmf", 6, p, kappa=kappa)
    q = latent(torch.randn(3, 6))
    z = q.rsample((4000,))
    assert torch.allclose(z.norm(dim=-1), torch.ones(()), atol=1e-5)
    # The same KL for every document.
    assert torch.allclose(latent.kl(q), torch.full((3,), _vmf_kl_to_uniform(p, kappa)), rtol=1e-4)
    # E_q[z] = A_p(kappa) mu, against the Monte Carlo mean.
    assert torch.allclose(latent.mean(q), z.mean(0), atol=0.03)
    assert latent.prior_variance == pytest.approx(1 / p)


@requires_vmf
def test_vmf_fixed_kl_follows_a_loaded_kappa() -> None:
    # The fixed-kappa KL is cached; a state dict with another kappa, loaded through a parent module as a
    # checkpoint would be, must bring its own KL with it.
    torch.manual_seed(0)
    target = torch.nn.Sequential(make_latent("vmf", 6, 5, kappa=20.0))
    source = torch.nn.Sequential(make_latent("vmf", 6, 5, kappa=60.0))
    h = torch.randn(3, 6)
    expected = torch.full((3,), _vmf_kl_to_uniform(5, 60.0))
    assert not torch.allclose(target[0].kl(target[0](h)), expected, rtol=1e-4)
    target.load_state_dict(source.state_dict())
    assert torch.allclose(target[0].kl(target[0](h)), expected, rtol=1e-4)


@requires_vmf
def test_vmf_learned_kappa_starts_at_the_given_value_and_gets_gradients() -> None:
    latent = make_latent("vmf", 6, 4, kappa=50.0, learn_kappa=True)
    q = latent(torch.randn(3, 6))
    assert torch.allclose(q.concentration, torch.full((3,), 50.0))
    (q.rsample().sum() + latent.kl(q).sum()).backward()
    assert latent.kappa_head.bias.grad is not None and bool(latent.kappa_head.bias.grad.abs() > 0)


@pytest.mark.parametrize("kind, kwargs", [("gaussian", {}), ("vmf", {"kappa": 30.0}), ("vmf", {"learn_kappa": True})])
def test_pairwise_log_prob_matches_the_broadcast_log_prob(kind: str, kwargs: dict) -> None:
    """The closed forms (one matrix product) give log q_j(z_i) as the distributions' own log_prob does."""
    torch.manual_seed(0)
    latent = make_latent(kind, 8, 5, **kwargs).double()
    with torch.no_grad():
        for param in latent.parameters():
            param.normal_()  # spread the posteriors (learned kappa and log sigma start constant)
        q = latent(torch.randn(7, 8, dtype=torch.float64))
        z = q.sample((3,)).reshape(21, 5)
        pairwise = latent.pairwise_log_prob(q, z)
    assert pairwise.shape == (21, 7) and pairwise.dtype == torch.float64
    # The expanded square cancels: its error is a few ulps of sum_k (z_k / s_k)^2, here up to about 1e5.
    torch.testing.assert_close(pairwise, q.log_prob(z.unsqueeze(1)), rtol=1e-9, atol=1e-9)
