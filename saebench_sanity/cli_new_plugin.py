"""``saebench new-plugin NAME [--dir DIR]``: write a starter plugin package that installs and whose
tests pass as written.

Wired into ``saebench`` by ``cli.py`` (``add_parser`` / ``run``). ``NAME`` is the distribution
name (``saebench-mine``); the import package is ``NAME`` with ``-`` as ``_`` (``saebench_mine``).
The package gets, in ``DIR/NAME/``:

* ``pyproject.toml`` with the ``saebench_sanity`` entry point (the only link to saebench-sanity);
* ``<package>/plugin.py`` registering one item of each kind a plugin commonly adds: an activation
  set (sparse codes over random directions, with ground truth), an architecture (a TopK SAE built
  with sae-lens), a baseline training mode (frozen random sign directions, on the public
  ``RandomDirectionsBaseline``) and a metric (decoder redundancy); judges, probing tasks and executors are left out of the starter (see
  docs/plugins.md for their hooks);
* ``tests/test_plugin.py`` running the conformance kit (``saebench_sanity.testing``) on each item
  and checking the plugin registers without problems;
* a README with the commands to install and test it.

Exit codes: 0 written; 2 bad input (a name that is not a valid distribution name, a target folder
that exists and is not empty).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from saebench_sanity.errors import ConfigError

_DIST_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("new-plugin", help="write a starter plugin package (entry point, one item per kind, "
                                                 "conformance tests) to build on")
    p.add_argument("name", metavar="NAME", help="distribution name, e.g. saebench-mine (package: saebench_mine)")
    p.add_argument("--dir", default=".", metavar="DIR", help="where to create the NAME/ folder (default: here)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def names_for(name: str) -> dict[str, str]:
    """``{"dist", "package", "slug"}`` for a distribution name; ``slug`` prefixes item names."""
    if not _DIST_RE.match(name):
        raise ConfigError(f"plugin name {name!r} is not a distribution name: use lowercase letters, digits and "
                          "single '-' or '_' between them, starting with a letter (e.g. saebench-mine)")
    package = name.replace("-", "_")
    slug = re.sub(r"^saebench[-_]", "", name).replace("_", "-") or name
    return {"dist": name, "package": package, "slug": slug}


def render(name: str) -> dict[str, str]:
    """Relative path -> file content of the starter package for ``name``."""
    from saebench_sanity import HOOKSPEC_VERSION, __version__

    fill = {**names_for(name), "hookspec": HOOKSPEC_VERSION, "version": __version__}
    return {path.format(**fill): text.format(**fill) for path, text in {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        "{package}/__init__.py": INIT,
        "{package}/plugin.py": PLUGIN,
        "{package}/data.py": DATA,
        "{package}/architecture.py": ARCH,
        "{package}/mode.py": MODE,
        "{package}/metric.py": METRIC,
        "tests/test_plugin.py": TEST,
    }.items()}


def write(name: str, where: str | Path) -> Path:
    """Write the starter package into ``where/name`` (which must not exist or be empty)."""
    names_for(name)  # an invalid name is named as such, before ``where/name`` is looked at
    root = Path(where) / name
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root} already exists and is not empty; choose another --dir or NAME")
    for rel, text in render(name).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run(args: argparse.Namespace) -> int:
    root = write(args.name, args.dir)
    n = names_for(args.name)
    sys.stdout.write(f"wrote the starter plugin {n['dist']} in {root}\n"
                     f"  pip install -e {root}        # registers the entry point\n"
                     f"  saebench list --strict          # its items, exit 1 on any plugin problem\n"
                     f"  python -m pytest {root / 'tests'}   # the conformance kit on each item\n")
    return 0


# -- templates (str.format: literal braces are doubled) ------------------------------------------
PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A saebench-sanity plugin"
requires-python = ">=3.11"
dependencies = ["saebench-sanity>={version}"]

[project.optional-dependencies]
dev = ["pytest>=8"]

# The only thing that connects this package to saebench-sanity. Its version is part of every
# cache key of the cells and metrics its items contribute to: bump it when their code changes.
[project.entry-points.saebench_sanity]
{package} = "{package}.plugin"

[tool.setuptools.packages.find]
include = ["{package}*"]
'''

README = '''# {dist}

A plugin for [saebench-sanity](https://pypi.org/project/saebench-sanity/), started with
`saebench new-plugin {dist}`. It registers:

| kind | name | module |
|---|---|---|
| activation set | `{slug}-set` | `{package}/data.py` |
| architecture | `{slug}-topk` | `{package}/architecture.py` |
| training mode (baseline) | `{slug}-sign-decoder` | `{package}/mode.py` |
| metric | `{slug}-decoder-redundancy` | `{package}/metric.py` |

```bash
pip install -e .                 # registers the entry point "{package}"
saebench list --strict           # lists the items; exits 1 if any plugin has a problem
python -m pytest tests           # the conformance kit on every item
```

Use them in a run configuration, e.g.

```toml
[run]
sets = ["{slug}-set"]
architectures = ["topk", "{slug}-topk"]
modes = ["trained", "frozen_decoder", "{slug}-sign-decoder"]
metrics = ["reconstruction", "ground_truth", "{slug}-decoder-redundancy"]
```

The contract (every hook, every spec field, the seeding rule, the configuration format) is in
saebench-sanity's docs/plugins.md.
'''

INIT = '''"""{dist}: a saebench-sanity plugin (entry point: {package}.plugin)."""
'''

PLUGIN = '''"""Entry-point module: registers this package's items.

It imports nothing heavy: factories are "module:attribute" references, imported when an item is
first used, so `saebench list` stays fast.
"""

from saebench_sanity import ActivationSetSpec, ArchitectureSpec, MetricSpec, ScoreInfo, TrainingModeSpec, hookimpl

SAEBENCH_HOOKSPEC_VERSION = "{hookspec}"


@hookimpl
def saebench_register_activation_sets(register):
    register(ActivationSetSpec(
        name="{slug}-set",
        description="sparse codes over random unit directions in superposition (with ground truth)",
        factory="{package}.data:SparseDirectionsSet",
        params={{"d_in": 16, "n_features": 32, "p_fire": 0.1, "n_eval": 2048, "seed": 0}},
        family="synthetic",
        d_in=16,
        training={{"steps": 300, "batch_size": 128, "lr": 3e-3, "d_sae": 64, "target_l0": 4}},
    ))


@hookimpl
def saebench_register_architectures(register):
    register(ArchitectureSpec(
        name="{slug}-topk",
        description="TopK SAE built directly with sae-lens (edit architecture.py)",
        factory="{package}.architecture:build",
        params={{"k": 8}},
        roles={{"W_enc": "encoder", "W_dec": "decoder", "b_enc": "encoder_bias", "b_dec": "decoder_bias"}},
        sparsity_param="k",  # a run's target L0 sets k
        sae_lens_architecture="topk",
    ))


@hookimpl
def saebench_register_training_modes(register):
    register(TrainingModeSpec(
        name="{slug}-sign-decoder",
        description="baseline: decoder rows are random sign vectors, frozen; encoder and biases train",
        factory="{package}.mode:SignDecoder",
        is_baseline=True,
    ))


@hookimpl
def saebench_register_metrics(register):
    register(MetricSpec(
        name="{slug}-decoder-redundancy",
        description="mean over latents of the largest |cosine| between its decoder row and any other",
        factory="{package}.metric:decoder_redundancy",
        scores={{"decoder_redundancy": ScoreInfo(
            direction="lower", chance=None,
            definition="mean_i max_(j != i) |cos(W_dec[i], W_dec[j])| (SAEBench core average_max_decoder_cosine_sim, absolute)")}},
    ))
'''

DATA = '''"""The ``{slug}-set`` activation set: sparse codes over random unit directions."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from saebench_sanity import ActivationSet, GroundTruth


class SparseDirectionsSet(ActivationSet):
    """``x = c @ F``: ``F`` ``[n_features, d_in]`` random unit rows (superposition when
    ``n_features > d_in``), codes ``c`` ``[n, n_features]`` fire with probability ``p_fire`` with
    magnitudes ~ Exp(1). Everything follows from the parameters: the same parameters are the same
    data, which the manifest records (it is part of every cache key)."""

    def __init__(self, d_in: int = 16, n_features: int = 32, p_fire: float = 0.1, n_eval: int = 2048,
                 seed: int = 0, name: str = "{slug}-set") -> None:
        self.name, self.d_in = name, int(d_in)
        self.n_features, self.p_fire, self.n_eval, self.seed = int(n_features), float(p_fire), int(n_eval), int(seed)
        gen = torch.Generator().manual_seed(self.seed)
        features = torch.randn(self.n_features, self.d_in, generator=gen)
        self._features = features / features.norm(dim=1, keepdim=True)
        self._eval = self._draw(self.n_eval, torch.Generator().manual_seed(self.seed + 1))  # apart from training

    def _draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        fires = torch.rand(n, self.n_features, generator=gen) < self.p_fire
        mags = torch.empty(n, self.n_features).exponential_(1.0, generator=gen)
        return (fires * mags) @ self._features  # [n, d_in] float32

    def manifest(self) -> dict[str, Any]:
        return {{"kind": "{package}.sparse-directions", "d_in": self.d_in, "n_features": self.n_features,
                "p_fire": self.p_fire, "n_eval": self.n_eval, "seed": self.seed}}

    def train_batches(self, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(1_000_003 * (self.seed + 2) + seed)
        while True:
            yield self._draw(batch_size, gen)

    def eval_activations(self) -> torch.Tensor:
        return self._eval

    @property
    def ground_truth(self) -> GroundTruth:
        return GroundTruth(features=self._features,
                           firing_probabilities=torch.full((self.n_features,), self.p_fire))
'''

ARCH = '''"""The ``{slug}-topk`` architecture: a sae-lens TopK training SAE, so it saves and loads in SAELens
format."""

from __future__ import annotations

from typing import Any

import torch


def build(d_in: int, d_sae: int, seed: int, k: int = 8, **params: Any) -> Any:
    """``TopKTrainingSAE`` on CPU, float32, initialised from ``seed`` alone. ``params``: other
    ``TopKTrainingSAEConfig`` fields."""
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    cfg = TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=int(k), **params)
    with torch.random.fork_rng(devices=[]):  # sae-lens draws its init from the global RNG
        torch.manual_seed(seed)
        return TopKTrainingSAE(cfg)
'''

MODE = '''"""The ``{slug}-sign-decoder`` baseline: frozen random sign directions as the decoder.

Built on ``saebench_sanity.RandomDirectionsBaseline``, so it starts from the same kind of point
as the built-in baselines (encoder tied to the decoder, least-squares output scale, ``b_dec`` at
the sample mean when biases are frozen); only ``directions`` is this plugin's own. Tensors are
reached through the architecture's roles; randomness comes from the global torch RNG, which the
trainer seeds per cell.
"""

from __future__ import annotations

from typing import Any

import torch

from saebench_sanity import RandomDirectionsBaseline


class SignDecoder(RandomDirectionsBaseline):
    """Decoder rows ``[d_sae, d_in]``: independent random signs, each coordinate +-1/sqrt(d_in)
    (unit norm), frozen; the encoder starts at ``W_dec.T`` and trains with the biases (unless
    ``train_biases = false``)."""

    name = "{slug}-sign-decoder"
    DEFAULTS = {{"train_biases": True, "fit_scale": True}}

    def _frozen(self) -> tuple[str, ...]:
        return ("decoder", *self._bias_roles_frozen())

    def directions(self, n: int, d_in: int, sample_acts: Any) -> torch.Tensor:
        signs = torch.randint(0, 2, (n, d_in), dtype=torch.int64) * 2 - 1
        return signs.to(torch.float32) / d_in ** 0.5

    def prepare(self, sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
        dirs = self.init_tied(sae, roles, sample_acts)
        self.center(sae, roles, sample_acts)
        self.fit_scale(sae, roles, sample_acts, "encoder")
        self.freeze(sae, roles)
        self.record(sae, roles, decoder=dirs)

    def check(self, sae: Any) -> None:
        self.check_frozen(sae, "decoder")
'''

METRIC = '''"""The ``{slug}-decoder-redundancy`` metric."""

from __future__ import annotations

from typing import Any

import torch

from saebench_sanity import MetricResult


def decoder_redundancy(ctx: Any) -> MetricResult:
    """Mean over latents of the largest ``|cos|`` between its decoder row and any other row of
    ``W_dec`` ``[d_sae, d_in]`` (0 = orthogonal directions, 1 = a duplicate). Computed in float64.
    Everything comes from the context (``ctx.sae``); the details, stored beside the score, count
    the near-duplicate latents (``|cos| >= 0.99``)."""
    W = ctx.sae.W_dec.detach().to(torch.float64)
    unit = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (unit @ unit.T).abs()
    cos.fill_diagonal_(0.0)
    nearest = cos.max(dim=1).values
    return MetricResult({{"decoder_redundancy": float(nearest.mean())}},
                        details={{"near_duplicates": int((nearest >= 0.99).sum())}})
'''

TEST = '''"""{dist} honours the saebench-sanity contract (the conformance kit, saebench_sanity.testing)."""

import torch

from saebench_sanity import testing
from saebench_sanity.registry import get_registry

ITEMS = {{"activation_set": "{slug}-set", "architecture": "{slug}-topk",
         "training_mode": "{slug}-sign-decoder", "metric": "{slug}-decoder-redundancy"}}


def test_the_plugin_registers_every_item_without_problems():
    registry = get_registry(refresh=True)
    assert [str(p) for p in registry.problems if p.plugin == "{package}"] == []
    for kind, name in ITEMS.items():
        assert registry.get(kind, name).package == "{dist}"


def test_activation_set():
    aset = testing.check_activation_set("{slug}-set")
    assert aset.ground_truth.features.shape == (32, 16)


def test_architecture():
    testing.check_architecture("{slug}-topk")


def test_training_mode():
    testing.check_training_mode("{slug}-sign-decoder", architecture="{slug}-topk")


def test_metric():
    scores = testing.check_metric("{slug}-decoder-redundancy", architecture="{slug}-topk")
    assert 0.0 <= scores["decoder_redundancy"] <= 1.0


def test_metric_closed_form():
    """Two identical rows and one orthogonal row: redundancies 1, 1, 0 -> mean 2/3, two near
    duplicates. The context is built by hand: a metric needs no registry."""
    from types import SimpleNamespace

    from saebench_sanity import MetricContext

    from {package}.metric import decoder_redundancy

    W_dec = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    got = decoder_redundancy(MetricContext(SimpleNamespace(W_dec=W_dec), None, None))
    assert abs(got.scores["decoder_redundancy"] - 2 / 3) < 1e-12
    assert got.details == {{"near_duplicates": 2}}
'''
