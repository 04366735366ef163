"""Write the intersphinx inventories that ``docs/conf.py`` reads, so that the build needs no network.

* ``python.inv``: the inventory of the Python 3.11 documentation, as shipped by Debian's
  ``python3.11-doc`` package (``/usr/share/doc/python3.11/html/objects.inv``), copied unchanged.
* ``torch.inv``: a *curated subset* of PyTorch's inventory, written by this script from the table
  below: the torch names that the package's docstrings and these pages refer to, each with its page
  and anchor in the PyTorch documentation. It exists because PyTorch's own ``objects.inv`` could
  not be downloaded where these docs were first built (no network besides package registries).

With network access, ``--fetch`` replaces both by the projects' real inventories::

    python docs/_intersphinx/make_inventories.py            # torch.inv from the table below
    python docs/_intersphinx/make_inventories.py --fetch    # python.inv and torch.inv downloaded

A name missing from ``torch.inv`` is not an error: its reference renders as plain code, unlinked.
"""

from __future__ import annotations

import argparse
import urllib.request
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
TORCH_URL = "https://docs.pytorch.org/docs/stable/"
FETCH = {
    "python.inv": "https://docs.python.org/3/objects.inv",
    "torch.inv": TORCH_URL + "objects.inv",
}

_DIST = "distributions.html#"
# (name, role, page#anchor). Aliases such as torch.distributions.Normal point at the documented path.
TORCH_OBJECTS: list[tuple[str, str, str]] = [
    ("torch", "py:module", "torch.html#module-torch"),
    ("torch.Tensor", "py:class", "tensors.html#torch.Tensor"),
    ("torch.Generator", "py:class", "generated/torch.Generator.html#torch.Generator"),
    ("torch._C.Generator", "py:class", "generated/torch.Generator.html#torch.Generator"),  # as type hints name it
    ("torch.Size", "py:class", "size.html#torch.Size"),
    ("torch.dtype", "py:class", "tensor_attributes.html#torch.dtype"),
    ("torch.device", "py:class", "tensor_attributes.html#torch.device"),
    ("torch.manual_seed", "py:function", "generated/torch.manual_seed.html#torch.manual_seed"),
    ("torch.get_num_threads", "py:function", "generated/torch.get_num_threads.html#torch.get_num_threads"),
    ("torch.set_num_threads", "py:function", "generated/torch.set_num_threads.html#torch.set_num_threads"),
    ("torch.compile", "py:function", "generated/torch.compile.html#torch.compile"),
    ("torch.func.vmap", "py:function", "generated/torch.func.vmap.html#torch.func.vmap"),
    ("torch.func.grad", "py:function", "generated/torch.func.grad.html#torch.func.grad"),
    ("torch.vmap", "py:function", "generated/torch.vmap.html#torch.vmap"),
    ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
    (
        "torch.nn.functional.normalize",
        "py:function",
        "generated/torch.nn.functional.normalize.html#torch.nn.functional.normalize",
    ),
    (
        "torch.cuda.set_sync_debug_mode",
        "py:function",
        "generated/torch.cuda.set_sync_debug_mode.html#torch.cuda.set_sync_debug_mode",
    ),
    ("torch.distributions", "py:module", _DIST + "module-torch.distributions"),
    (
        "torch.distributions.distribution.Distribution",
        "py:class",
        _DIST + "torch.distributions.distribution.Distribution",
    ),
    ("torch.distributions.Distribution", "py:class", _DIST + "torch.distributions.distribution.Distribution"),
    (
        "torch.distributions.distribution.Distribution.set_default_validate_args",
        "py:method",
        _DIST + "torch.distributions.distribution.Distribution.set_default_validate_args",
    ),
    (
        "torch.distributions.distribution.Distribution.rsample",
        "py:method",
        _DIST + "torch.distributions.distribution.Distribution.rsample",
    ),
    (
        "torch.distributions.distribution.Distribution.sample",
        "py:method",
        _DIST + "torch.distributions.distribution.Distribution.sample",
    ),
    ("torch.distributions.kl.kl_divergence", "py:function", _DIST + "torch.distributions.kl.kl_divergence"),
    ("torch.distributions.kl_divergence", "py:function", _DIST + "torch.distributions.kl.kl_divergence"),
    ("torch.distributions.kl.register_kl", "py:function", _DIST + "torch.distributions.kl.register_kl"),
    ("torch.distributions.register_kl", "py:function", _DIST + "torch.distributions.kl.register_kl"),
    ("torch.distributions.normal.Normal", "py:class", _DIST + "torch.distributions.normal.Normal"),
    ("torch.distributions.Normal", "py:class", _DIST + "torch.distributions.normal.Normal"),
    ("torch.distributions.independent.Independent", "py:class", _DIST + "torch.distributions.independent.Independent"),
    ("torch.distributions.Independent", "py:class", _DIST + "torch.distributions.independent.Independent"),
    ("torch.distributions.von_mises.VonMises", "py:class", _DIST + "torch.distributions.von_mises.VonMises"),
    ("torch.distributions.constraints", "py:module", _DIST + "module-torch.distributions.constraints"),
    ("torch.distributions.constraints.Constraint", "py:class", _DIST + "torch.distributions.constraints.Constraint"),
    ("torch.distributions.constraint_registry", "py:module", _DIST + "module-torch.distributions.constraint_registry"),
    ("torch.distributions.transforms.Transform", "py:class", _DIST + "torch.distributions.transforms.Transform"),
    ("torch.distributions.transforms.ExpTransform", "py:class", _DIST + "torch.distributions.transforms.ExpTransform"),
    (
        "torch.distributions.transforms.SoftmaxTransform",
        "py:class",
        _DIST + "torch.distributions.transforms.SoftmaxTransform",
    ),
]


def write_inventory(path: Path, project: str, version: str, objects: list[tuple[str, str, str]]) -> None:
    """Sphinx inventory format version 2: a plain header, then zlib-compressed lines
    ``name domain:role priority uri display-name`` (``-``: display the name itself)."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in sorted(objects))
    path.write_bytes(header.encode() + zlib.compress(body.encode(), 9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fetch", action="store_true", help="download the real inventories instead")
    args = parser.parse_args()
    if args.fetch:
        for name, url in FETCH.items():
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (fixed https URLs)
                (HERE / name).write_bytes(response.read())
            print(f"wrote {name} from {url}")
        return
    write_inventory(HERE / "torch.inv", "PyTorch (curated subset, see make_inventories.py)", "stable", TORCH_OBJECTS)
    print(f"wrote torch.inv: {len(TORCH_OBJECTS)} objects")


if __name__ == "__main__":
    main()
