"""Print log C_p(kappa) and A_p(kappa) of the von Mises-Fisher distribution over a grid of
dimensions p and concentrations kappa, including the corners where scipy overflows.

    python examples/special_functions_table.py
"""

from __future__ import annotations

import torch

from spherical_dists.special import vmf_log_normalizer, vmf_mean_resultant_length

DIMS = [2, 3, 10, 100, 1024, 16384, 65536]
KAPPAS = [0.0, 1e-3, 1.0, 80.0, 1e4, 1e8]


def main() -> None:
    kappa = torch.tensor(KAPPAS, dtype=torch.float64)
    header = f"{'p':>6} | " + " | ".join(f"kappa={k:<8g}" for k in KAPPAS)
    for title, fn in (("log C_p(kappa)", vmf_log_normalizer), ("A_p(kappa) = E[mu^T z]", vmf_mean_resultant_length)):
        print(f"\n{title}\n{header}\n{'-' * len(header)}")
        for dim in DIMS:
            values = fn(dim, kappa)
            print(f"{dim:>6} | " + " | ".join(f"{v:>14.7g}" for v in values.tolist()))


if __name__ == "__main__":
    main()
