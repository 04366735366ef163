"""EM for a mixture of von Mises-Fisher distributions: ``spherical_dists.mixture.fit_vmf_mixture``
beside a plain-numpy reference implementation (scipy's ``ive`` for the Bessel functions), on the
same seeded synthetic data and from the same starting point (k-means++ seeding and one M-step, by
the package), for the same number of iterations.

Agreement: largest differences of the fitted parameters and of the final mean log-likelihood.
Speed: wall time per EM iteration (median of repeats), CPU, and CUDA when present (package only).

    python benchmarks/bench_mixture.py [--n 100000] [--p 50] [--k 10] [--iters 30] [--repeats 3]
                                       [--dtype float64] [--json benchmarks/results/bench_mixture.json]

The numpy reference is only valid where ``ive`` neither underflows nor overflows (moderate p and
kappa, as in the default data: p = 50, kappa between 20 and 200).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.special
import torch

from spherical_dists import VonMisesFisher
from spherical_dists.mixture import fit_vmf_mixture


def synthetic(n: int, p: int, k: int, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    locs = torch.nn.functional.normalize(torch.randn(k, p, dtype=torch.float64, generator=gen), dim=-1)
    kappas = 10.0 ** (math.log10(20.0) + torch.rand(k, dtype=torch.float64, generator=gen) * math.log10(10.0))
    gamma = -torch.log(torch.rand(k, 5, dtype=torch.float64, generator=gen)).sum(-1)  # Gamma(5) variables
    weights = gamma / gamma.sum()  # Dirichlet(5, ..., 5)
    component = torch.multinomial(weights, n, replacement=True, generator=gen)
    x = VonMisesFisher(locs[component], kappas[component]).sample(generator=gen)
    return x.to(dtype), {"weights": weights, "locs": locs, "concentrations": kappas}


# ---------------------------------------------------------------------------- numpy reference


def _log_vmf_normalizer(p: int, kappa: np.ndarray) -> np.ndarray:
    v = p / 2 - 1
    return v * np.log(kappa) - (p / 2) * np.log(2 * np.pi) - (np.log(scipy.special.ive(v, kappa)) + kappa)


def _solve_kappa(p: int, r: np.ndarray) -> np.ndarray:
    kappa = r * (p - r**2) / (1 - r**2)  # Sra (2012)
    v = p / 2 - 1
    for _ in range(6):
        a = scipy.special.ive(v + 1, kappa) / scipy.special.ive(v, kappa)
        kappa = kappa - (a - r) / (1 - a**2 - (p - 1) * a / kappa)
    return kappa


def numpy_em(
    x: np.ndarray, weights: np.ndarray, locs: np.ndarray, kappas: np.ndarray, iters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Textbook soft EM (Banerjee et al. 2005), log-domain E-step, float64 throughout."""
    n, p = x.shape
    log_w, mu, kappa = np.log(weights), locs.copy(), kappas.copy()
    history = []
    for _ in range(iters):
        log_joint = log_w + _log_vmf_normalizer(p, kappa) + kappa * (x @ mu.T)
        top = log_joint.max(axis=1, keepdims=True)
        log_point = top + np.log(np.exp(log_joint - top).sum(axis=1, keepdims=True))
        history.append(float(log_point.mean()))
        resp = np.exp(log_joint - log_point)
        counts = resp.sum(axis=0)
        resultant = resp.T @ x
        norm = np.linalg.norm(resultant, axis=1)
        mu = resultant / norm[:, None]
        log_w = np.log(counts / n)
        kappa = _solve_kappa(p, norm / counts)
    log_joint = log_w + _log_vmf_normalizer(p, kappa) + kappa * (x @ mu.T)
    top = log_joint.max(axis=1, keepdims=True)
    history.append(float((top + np.log(np.exp(log_joint - top).sum(axis=1, keepdims=True))).mean()))
    return np.exp(log_w), mu, kappa, history


# ---------------------------------------------------------------------------- driver


def _median_time(run, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--p", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)

    x, truth = synthetic(args.n, args.p, args.k, args.seed, dtype)
    start = fit_vmf_mixture(x, args.k, max_iter=0, generator=torch.Generator().manual_seed(args.seed + 1))
    init = (start.weights.double(), start.locs.double(), start.concentrations.double())

    def ours(device: str) -> object:
        xd = x.to(device)
        return fit_vmf_mixture(
            xd,
            args.k,
            max_iter=args.iters,
            tol=-1.0,
            init=tuple(t.to(device) for t in init),  # type: ignore[arg-type]
        )

    rows = []
    x_np = x.double().numpy()
    t_numpy, (w_np, mu_np, k_np, hist_np) = _median_time(  # type: ignore[misc]
        lambda: numpy_em(x_np, *(t.numpy() for t in init), args.iters), args.repeats
    )
    rows.append(
        {"implementation": "numpy reference (float64)", "device": "cpu", "seconds_per_iter": t_numpy / args.iters}
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = {}
    for device in devices:
        ours(device)  # warm-up
        seconds, fit = _median_time(lambda device=device: ours(device), args.repeats)
        results[device] = fit
        rows.append(
            {
                "implementation": f"spherical_dists ({args.dtype})",
                "device": device,
                "seconds_per_iter": seconds / args.iters,
            }
        )
    fit = results["cpu"]
    agreement = {
        "max_abs_diff_weights": float(np.abs(fit.weights.double().numpy() - w_np).max()),
        "max_abs_diff_locs": float(np.abs(fit.locs.double().numpy() - mu_np).max()),
        "max_rel_diff_concentrations": float((np.abs(fit.concentrations.double().numpy() - k_np) / k_np).max()),
        "abs_diff_final_mean_log_likelihood": abs(float(fit.log_likelihood[-1]) - hist_np[-1]),
        "final_mean_log_likelihood": float(fit.log_likelihood[-1]),
    }
    # Recovery of the generating parameters (component matched to the nearest true direction).
    order = (fit.locs.double() @ truth["locs"].T).argmax(0)
    recovery = {
        "max_abs_error_weights": float((fit.weights.double()[order] - truth["weights"]).abs().max()),
        "max_rel_error_concentrations": float(
            ((fit.concentrations.double()[order] - truth["concentrations"]).abs() / truth["concentrations"]).max()
        ),
        "components_matched_one_to_one": sorted(order.tolist()) == list(range(args.k)),
    }

    print(f"EM, n = {args.n}, p = {args.p}, K = {args.k}, {args.iters} iterations, median of {args.repeats}")
    print(f"{'implementation':<32} {'device':<7} {'ms / iteration':>15} {'speed-up':>9}")
    for row in rows:
        speedup = rows[0]["seconds_per_iter"] / row["seconds_per_iter"]
        print(f"{row['implementation']:<32} {row['device']:<7} {1e3 * row['seconds_per_iter']:>15.2f} {speedup:>8.1f}x")
    print("agreement with the numpy reference:", json.dumps(agreement, indent=None))
    print("recovery of the generating parameters:", json.dumps(recovery, indent=None))

    if args.json is not None:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=False).stdout
        record = {
            "benchmark": "bench_mixture",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "commit": commit + ("-dirty" if dirty.strip() else ""),
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "scipy": scipy.__version__,
            },
            "config": vars(args) | {"json": str(args.json)},
            "rows": rows,
            "agreement": agreement,
            "recovery": recovery,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
