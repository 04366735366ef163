"""The sentence VAE and the estimators it is evaluated with: IW bound against an exact marginal likelihood,
mutual information at its two extremes, padding that never counts, and training end to end."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from textvae.data import Batches
from textvae.environment import seed_everything
from textvae.evaluation import elbo_terms, iw_nll, mutual_information
from textvae.latents import GaussianLatent
from textvae.lstm_vae import SentenceVAE, SentenceVAEConfig
from textvae.sentences import SentenceDataConfig, SentenceSplits, load_sentence_splits
from textvae.training import TrainConfig, Trainer
from textvae.vae import TextVAE
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from .conftest import write_sentence_corpus


class LinearGaussian(TextVAE):
    r"""``z ~ N(0, I_d)``, ``x | z ~ N(W z + b, s^2 I)``: the marginal :math:`p(x) = N(b, W W^T + s^2 I)` is exact.

    ``exact=True`` uses the true posterior :math:`N(\Sigma W^T (x - b) / s^2, \Sigma)`,
    :math:`\Sigma = (I + W^T W / s^2)^{-1}`, as ``q``; otherwise a diagonal Gaussian with a shifted mean and
    inflated variances (a poor but valid proposal).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, scale: float, exact: bool) -> None:
        super().__init__(GaussianLatent(1, weight.shape[1]))
        self.weight, self.bias, self.scale, self.exact = weight, bias, scale, exact
        d = weight.shape[1]
        self.cov = torch.linalg.inv(torch.eye(d, dtype=weight.dtype) + weight.T @ weight / scale**2)

    def marginal(self) -> MultivariateNormal:
        n = self.weight.shape[0]
        cov = self.weight @ self.weight.T + self.scale**2 * torch.eye(n, dtype=self.weight.dtype)
        return MultivariateNormal(self.bias, cov)

    def posterior(self, x: torch.Tensor) -> Distribution:
        mean = (x - self.bias) @ self.weight @ self.cov / self.scale**2
        if self.exact:
            return MultivariateNormal(mean, self.cov)
        return Independent(Normal(mean + 0.3, 1.5 * self.cov.diagonal().sqrt()), 1)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return Normal(z @ self.weight.T + self.bias, self.scale).log_prob(x).sum(-1)

    def n_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0])


def _linear_gaussian(exact: bool) -> tuple[LinearGaussian, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    model = LinearGaussian(weight, torch.randn(5, generator=gen, dtype=torch.float64), 0.7, exact).double()
    return model, model.marginal().sample((4,)).detach()


def test_iw_bound_with_the_exact_posterior_is_the_exact_marginal() -> None:
    """With q = p(z|x) every importance weight equals p(x): the estimate is exact for any K."""
    torch.manual_seed(0)
    model, x = _linear_gaussian(exact=True)
    exact = -model.marginal().log_prob(x)
    torch.testing.assert_close(iw_nll(model, [x], n_samples=3, chunk=2), exact, rtol=0, atol=1e-10)


def test_iw_bound_converges_to_the_exact_marginal_from_above() -> None:
    """A poor proposal: the ELBO is more than 0.1 nats above -log p(x); the IW bound with K = 20,000 samples is
    within four standard errors of it. The standard error of log(mean w) is sqrt(Var(w) / K) / E[w] (delta
    method), with Var(w) / E[w]^2 estimated from an independent draw of the weights (about 4 here, so the
    tolerance is about 0.06 nats); the bias, about half the squared standard error, is far below it."""
    torch.manual_seed(0)
    model, x = _linear_gaussian(exact=False)
    exact = -model.marginal().log_prob(x)
    elbo = elbo_terms(model, [x], n_samples=2000)
    assert (elbo["recon"] + elbo["kl"] - exact).min() > 0.1  # a loose bound to start from
    k = 20_000
    estimate = iw_nll(model, [x], n_samples=k, chunk=5000)
    log_w = model.log_importance_weights(x, k)
    w = (log_w - log_w.max(0).values).exp()
    standard_error = (w.var(0) / w.mean(0) ** 2 / k).sqrt()
    assert ((estimate - exact).abs() < 4 * standard_error).all()
    assert (standard_error < 0.02).all()  # the check has teeth


def test_mutual_information_is_zero_for_identical_posteriors_and_log_n_for_separated_ones() -> None:
    class Fixed(LinearGaussian):
        def __init__(self, locs: torch.Tensor) -> None:
            TextVAE.__init__(self, GaussianLatent(1, locs.shape[1]))
            self.locs = locs

        def posterior(self, x: torch.Tensor) -> Distribution:
            return Independent(Normal(self.locs[x], 0.01), 1)

    torch.manual_seed(0)
    n = 40
    batches = [torch.arange(0, 25), torch.arange(25, n)]
    same = mutual_information(Fixed(torch.zeros(n, 2)), batches, chunk=7)
    assert same == pytest.approx(0.0, abs=1e-12)  # log q(z|x) = log q(z) exactly
    apart = mutual_information(Fixed(torch.arange(n, dtype=torch.float32)[:, None].expand(n, 2) * 10), batches)
    assert apart == pytest.approx(math.log(n), abs=1e-6)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> SentenceSplits:
    directory = write_sentence_corpus(tmp_path_factory.mktemp("sentences"), sizes=(112, 32, 32))
    return load_sentence_splits(SentenceDataConfig(data_dir=str(directory)))


SMALL = SentenceVAEConfig(latent_dim=4, embed=8, hidden=16, dropout=0.0, kappa=10.0)


@pytest.mark.parametrize(
    "config",
    [SMALL, replace(SMALL, latent="gaussian", skip=True, layers=2), replace(SMALL, latent="none", inputless=True)],
)
def test_padding_never_changes_a_sentence_score(splits: SentenceSplits, config: SentenceVAEConfig) -> None:
    torch.manual_seed(0)
    model = SentenceVAE(config, splits.vocab).eval()
    lengths = splits.train.lengths
    short, long = int(lengths.argmin()), int(lengths.argmax())
    z = torch.randn(3, 1, model.latent.dim)
    alone = model.log_likelihood(splits.train.collate(torch.tensor([short])), z)
    padded = model.log_likelihood(splits.train.collate(torch.tensor([long, short])), z.expand(3, 2, -1))
    torch.testing.assert_close(padded[:, 1:], alone)
    batch = splits.train.collate(torch.tensor([long, short]))
    assert model.n_tokens(batch).tolist() == lengths[[long, short]].tolist()


def test_the_rnnlm_has_no_kl_and_exact_bounds(splits: SentenceSplits) -> None:
    torch.manual_seed(0)
    model = SentenceVAE(replace(SMALL, latent="none"), splits.vocab)
    batches = list(Batches(splits.valid, 16, shuffle=False, lengths=splits.valid.lengths))
    terms = elbo_terms(model, batches, n_samples=2)
    assert terms["kl"].abs().max() == 0
    torch.testing.assert_close(iw_nll(model, batches, n_samples=3), terms["recon"])  # no latent: exact NLL
    assert mutual_information(model, batches) == 0.0


def _trainer(splits: SentenceSplits, run_dir: Path, config: TrainConfig, latent: str = "vmf") -> Trainer:
    seed_everything(0)
    model = SentenceVAE(replace(SMALL, latent=latent), splits.vocab)
    return Trainer(
        model,
        Batches(splits.train, config.batch_size, shuffle=True, seed=config.seed, lengths=splits.train.lengths),
        Batches(splits.valid, 64, shuffle=False, lengths=splits.valid.lengths),
        config,
        run_dir,
        log=lambda line: None,
    )


TRAIN = TrainConfig(lr=1e-2, batch_size=16, max_epochs=3, patience=10, device="cpu", progress=False)


@pytest.mark.parametrize("latent", ["vmf", "gaussian", "none"])
def test_training_lowers_the_loss_and_reports_throughput(splits: SentenceSplits, tmp_path: Path, latent: str) -> None:
    config = replace(TRAIN, kl_warmup_steps=20 if latent == "gaussian" else 0)
    result = _trainer(splits, tmp_path, config, latent).fit()
    history = result.history
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 1.0
    assert history[-1]["valid_nll"] < history[0]["valid_nll"]
    assert all(h["tokens_per_second"] > 0 for h in history)
    if latent == "vmf":  # a fixed kappa: the KL is the same constant > 0 for every sentence
        assert history[0]["valid_kl"] == pytest.approx(history[-1]["valid_kl"], rel=1e-5)
        assert history[0]["valid_kl"] > 0


def test_resume_continues_exactly(splits: SentenceSplits, tmp_path: Path) -> None:
    reference = _trainer(splits, tmp_path / "ref", TRAIN).fit()
    _trainer(splits, tmp_path / "run", replace(TRAIN, max_epochs=2)).fit()
    resumed = _trainer(splits, tmp_path / "run", TRAIN).fit(resume=True)

    def without_time(history: list[dict]) -> list[dict]:
        timing = ("seconds", "train_seconds", "tokens_per_second")
        return [{k: v for k, v in h.items() if k not in timing} for h in history]

    assert without_time(resumed.history) == without_time(reference.history)
