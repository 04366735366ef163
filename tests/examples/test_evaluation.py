"""Perplexities, the importance-weighted bound and active units, checked on models with known answers."""

from __future__ import annotations

import doctest
import math

import pytest
import textvae.evaluation
import textvae.report
import torch
from textvae.evaluation import EvalConfig, active_units, elbo_terms, evaluate, iw_nll, perplexities
from textvae.latents import GaussianLatent
from textvae.vae import TextVAE
from torch import Tensor
from torch.distributions import Normal

NOISE = 0.5  # standard deviation of x given z in the linear-Gaussian model


class LinearGaussian(TextVAE):
    r"""z ~ N(0, I_2), x | z ~ N(z, NOISE^2 I_2): the exact posterior is N(x / (1 + s^2), s^2 / (1 + s^2) I)
    and the marginal N(0, (1 + s^2) I), so every quantity of the evaluation has a closed form.

    The encoder is the GaussianLatent head applied to x itself, with weights set to the exact posterior,
    optionally shifted and widened to make the posterior approximate.
    """

    def __init__(self, loc_shift: float = 0.0, scale_factor: float = 1.0) -> None:
        super().__init__(GaussianLatent(2, 2))
        v = NOISE**2
        with torch.no_grad():
            self.latent.loc.weight.copy_(torch.eye(2) / (1 + v))
            self.latent.loc.bias.fill_(loc_shift)
            self.latent.log_scale.bias.fill_(0.5 * math.log(v / (1 + v)) + math.log(scale_factor))

    def posterior(self, batch: Tensor):  # type: ignore[no-untyped-def]
        return self.latent(batch)

    def log_likelihood(self, batch: Tensor, z: Tensor) -> Tensor:
        return Normal(z, NOISE).log_prob(batch).sum(-1)

    def n_tokens(self, batch: Tensor) -> Tensor:
        return torch.ones(batch.shape[0])


def _exact_nll(x: Tensor) -> Tensor:
    """-log N(x; 0, (1 + s^2) I), written out."""
    var = 1 + NOISE**2
    return (x.pow(2) / (2 * var)).sum(-1).double() + math.log(2 * math.pi * var)


X = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.7, -0.1], [1.5, 1.5]])


def test_perplexity_definitions() -> None:
    nll, tokens = torch.tensor([10.0, 30.0]), torch.tensor([5.0, 10.0])
    ppl = perplexities(nll, tokens)
    assert ppl["corpus"] == pytest.approx(math.exp(40 / 15))
    assert ppl["per_doc"] == pytest.approx(math.exp((10 / 5 + 30 / 10) / 2))
    with pytest.raises(ValueError, match="at least one token"):
        perplexities(nll, torch.tensor([1.0, 0.0]))


def test_iw_bound_is_exact_with_the_exact_posterior() -> None:
    model = LinearGaussian()
    nll = iw_nll(model, [X[:3], X[3:]], n_samples=7, chunk=3)  # every weight equals p(x)
    assert torch.allclose(nll, _exact_nll(X), atol=1e-5)


def test_elbo_with_the_exact_posterior_is_tight() -> None:
    terms = elbo_terms(LinearGaussian(), [X], n_samples=20000)
    assert torch.allclose(terms["recon"] + terms["kl"], _exact_nll(X), atol=0.03)
    assert terms["n_tokens"].tolist() == [1, 1, 1, 1]


def test_iw_bound_tightens_towards_the_true_nll_with_more_samples() -> None:
    model = LinearGaussian(loc_shift=0.3, scale_factor=1.6)
    exact = _exact_nll(X).mean()
    terms = elbo_terms(model, [X], n_samples=20000)
    elbo = (terms["recon"] + terms["kl"]).mean()
    iw_10 = iw_nll(model, [X] * 50, n_samples=10).mean()  # averaged over 50 repeats of the batch
    iw_2000 = iw_nll(model, [X], n_samples=2000, chunk=500).mean()
    assert elbo > exact + 0.2  # the approximate posterior has a visible gap
    assert elbo > iw_10 > iw_2000 > exact - 0.01
    assert iw_2000 == pytest.approx(float(exact), abs=0.02)


def test_active_units_threshold_scales_with_the_prior_variance() -> None:
    model = LinearGaussian()
    with torch.no_grad():
        model.latent.loc.weight.copy_(torch.diag(torch.tensor([1.0, 0.05])))
    x = torch.tensor([[-1.0, -1.0], [1.0, 1.0]]).repeat(10, 1)  # each coordinate has variance exactly 1
    units = active_units(model, [x[:7], x[7:]], threshold=0.01)
    assert units["variance"] == pytest.approx([1.0, 0.0025])
    assert (units["active"], units["active_abs"]) == (1, 1)
    model.latent.prior_variance = 0.1  # a prior 10 times narrower: relative threshold 0.001
    units = active_units(model, [x], threshold=0.01)
    assert (units["active"], units["active_abs"]) == (2, 1)


def test_evaluate_reports_every_metric_consistently() -> None:
    model = LinearGaussian()
    result = evaluate(
        model, lambda: [X[:2], X[2:]], EvalConfig(eval_samples=5, iw_samples=8, iw_chunk=3), log=lambda s: None
    )
    exact = _exact_nll(X)
    assert result["iw_nll"] == pytest.approx(float(exact.mean()), abs=1e-5)
    assert result["iw_ppl_corpus"] == pytest.approx(math.exp(float(exact.mean())), rel=1e-5)  # one token each
    assert result["ppl_corpus"] == pytest.approx(math.exp(result["nll"]))
    assert result["nll"] == pytest.approx(result["recon"] + result["kl"])
    assert (result["n_examples"], result["n_tokens"], result["active_units"]) == (4, 4, 2)


def test_evaluation_shows_progress_and_keeps_its_numbers(capsys: pytest.CaptureFixture) -> None:
    """The test evaluation (about a minute for the quick start) shows a bar over each pass; with or
    without it the numbers are the same."""
    pytest.importorskip("tqdm")
    config = EvalConfig(eval_samples=5, iw_samples=8, iw_chunk=3)
    results = []
    for progress in (False, True):
        torch.manual_seed(0)
        results.append(evaluate(LinearGaussian(), lambda: [X[:2], X[2:]], config, lambda s: None, progress))
    err = capsys.readouterr().err
    assert "test ELBO:" in err and "test IW bound:" in err and "/2 " in err  # two batches per pass
    assert results[0] == results[1]


def test_evaluation_restores_training_mode() -> None:
    model = LinearGaussian()
    model.train()
    elbo_terms(model, [X])
    iw_nll(model, [X], 2)
    active_units(model, [X])
    assert model.training


@pytest.mark.parametrize("module", [textvae.evaluation, textvae.report])
def test_doctests(module: object) -> None:
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).failed == 0
