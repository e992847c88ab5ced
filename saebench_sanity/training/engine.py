"""The cohort training engine: several cells trained as one batched tensor program.

``train_cohort`` trains M members (a sae-lens training SAE each, prepared by its training mode,
e.g. through ``training.trainer.build_cell``) on the IDENTICAL batch every step. Members whose
sae-lens class has batched math (``training.batched.batched_for``) and whose mode needs at most
the soft-frozen projection are stacked (parameters ``[M, ...]``); the others step through the solo
path (``training.trainer.CellTrainer``, i.e. sae-lens's ``SAETrainer``) in lockstep on the same
batch. Each batched member reproduces its solo run (tests/test_engine_*.py):

* Adam as sae-lens's ``SAETrainer`` (``torch.optim.Adam``: betas from ``SAETrainerConfig``
  defaults, eps 1e-8), through torch's functional ``adam`` (the code behind ``torch.optim.Adam``,
  fused kernel on CPU / CUDA) on per-member slices of the stacked tensors, grouped by lr: one
  torch optimizer takes one lr per parameter group, and a stacked tensor holds several members;
  per-member lr ``training.lr * control.lr_factor(step)``. (sae-lens's CPU Adam is torch's
  single-tensor algorithm; fused differs from it by rounding only: float64 fidelity 1e-12.)
* per-member gradient clipping at 1.0 over that member's trainable tensors (``clip_grad_norm_``);
* a tensor its mode froze (``requires_grad = False`` on the sae-lens parameter) is left out of
  clipping and Adam: no update, no moments (bit-identical after training, tested);
* the sparsity-coefficient warm-up (sae-lens ``CoefficientScheduler``), dead-latent tracking
  (``n_forward_passes_since_fired > dead_feature_window``) and the firing statistics of the last
  ``feature_sampling_window`` (``l0_train``), as ``CellTrainer`` configures them;
* the soft-frozen decoder's cone projection after every step (``modes.project_to_cone``), batched
  over the soft-frozen members.

Members stop independently (``control.observe`` returns True, or ``max_steps``); a member whose
loss turns NaN/inf is stopped and recorded as failed (step, loss) while the others go on. When a
member stops, its tensors are written back into its sae-lens module and it leaves the stacked
program. The caller then runs ``mode.check``, the BatchTopK threshold calibration and saving,
as ``train_cell`` does.

On a GPU nothing reads the device every step: loss curves, stop decisions and NaN checks happen
every ``training.curve_every`` steps (on CPU the NaN check runs every step; a read there is free).
Which paths a device takes is one predicate, ``batched.base.accelerator_paths``; the tests take
the accelerator paths on the CPU too (``ACCELERATOR_PATHS``): members follow their sae-lens solo
runs there as well, and a step reads nothing on the host (tests/test_engine_cohort.py).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol

from saebench_sanity.errors import ConfigError, DataError
from saebench_sanity.training.batched.base import accelerator_paths

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from saebench_sanity.config import TrainingConfig

log = logging.getLogger(__name__)

#: sae-lens ``SAETrainerConfig`` defaults (adam_beta1, adam_beta2) and torch Adam's eps.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
CLIP_NORM = 1.0
#: state-key prefixes of ``BatchedArch.init_state`` that stay on the CPU (Python-side config):
#: ``host_*`` per member ``[M, ...]``, ``shared_*`` one value for the whole cohort.
_HOST = ("host_", "shared_")


class MemberView(Protocol):
    def param(self, name: str) -> Any:
        """Detached copy of this member's sae-lens parameter ``name`` (its sae-lens shape)."""


class MemberControl(Protocol):
    """Decides a member's lr schedule and when it stops (``FixedBudget``; ``ConvergenceControl``)."""

    max_steps: int

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``training.lr`` for optimizer step ``step`` (1-based)."""

    def observe(self, step: int, values: Mapping[str, float], member: MemberView) -> bool:
        """Called after step ``step`` when ``step % training.curve_every == 0`` or ``step ==
        max_steps`` with the interval means of ``loss``, ``mse``, ``l0`` and every other sae-lens
        loss term; True stops this member now."""


class FixedBudget:
    """``max_steps`` steps with today's lr schedule, never stopping early.

    The factors come from sae-lens's own ``get_lr_scheduler`` (``training.lr_scheduler`` with its
    linear warm-up and decay, ``lr_end = lr / 10`` as sae-lens's runner) stepped on a dummy
    optimizer: factor(t) is the lr that scheduler gives optimizer step t, divided by ``training.lr``.
    """

    def __init__(self, training: "TrainingConfig", max_steps: int | None = None) -> None:
        import torch
        from sae_lens.training.optim import get_lr_scheduler

        self.max_steps = int(training.steps if max_steps is None else max_steps)
        lr = float(training.lr)
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
        sched = get_lr_scheduler(training.lr_scheduler, optimizer=opt, training_steps=self.max_steps, lr=lr,
                                 warm_up_steps=int(training.lr_warm_up_steps), decay_steps=int(training.lr_decay_steps),
                                 lr_end=lr / 10, num_cycles=1)  # lr_end, n_restart_cycles: as CellTrainer / sae-lens defaults
        self.lrs: list[float] = []
        for _ in range(self.max_steps):
            self.lrs.append(float(opt.param_groups[0]["lr"]))
            opt.step()
            sched.step()
        self.lr = lr

    def lr_factor(self, step: int) -> float:
        return self.lrs[min(step, self.max_steps) - 1] / self.lr

    def observe(self, step: int, values: Mapping[str, float], member: MemberView) -> bool:
        return False


@dataclass
class Member:
    """One cell of a cohort: its sae-lens SAE (prepared by ``mode``), mode, control, sample."""

    sae: Any
    mode: Any
    control: Any
    sample_acts: Any = None
    name: str = ""


@dataclass
class MemberResult:
    """What training one member produced.

    Attributes:
        sae: the trained sae-lens module (written back).
        steps: optimizer steps taken.
        seconds: wall time from the start of the cohort until this member stopped.
        loss_curve / mse_curve: ``(step, interval mean)`` at every observation.
        curves: every observed value (``loss``, ``mse``, ``l0`` and sae-lens loss terms) the same way.
        dead_fraction: fraction of latents not fired for ``dead_feature_window`` steps.
        l0_train: mean active latents per sample over the last sparsity window (NaN if none).
        failure: ``(step, loss)`` if the loss became NaN/inf, else None.
        stopped_by_control: True if ``control.observe`` stopped it before ``max_steps``.
        path: ``"batched"`` or ``"solo"``.
    """

    sae: Any
    steps: int
    seconds: float
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    mse_curve: list[tuple[int, float]] = field(default_factory=list)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    dead_fraction: float = math.nan
    l0_train: float = math.nan
    failure: tuple[int, float] | None = None
    stopped_by_control: bool = False
    path: str = "batched"


def coefficient_scale(control: Any, name: str) -> float:
    """Factor on a member's sae-lens coefficient ``name`` (after its warm-up) asked by its control:
    ``control.coefficient_scale`` for the names in ``control.scaled_coefficients`` (e.g. the
    matched-L0 controller, ``training.sparsity_control``), else 1."""
    if name in getattr(control, "scaled_coefficients", ()):
        return float(control.coefficient_scale)
    return 1.0


def resolve_device(device: Any) -> "torch.device":
    """``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` (or a torch.device) -> torch.device;
    ConfigError if this machine cannot run it (``saebench_sanity.devices``)."""
    import torch

    from saebench_sanity.devices import resolve_device as resolve

    return torch.device(resolve(str(device)))


def resolve_dtype(dtype: Any, device: "torch.device") -> "torch.dtype":
    """``float32 | float64 | bfloat16`` (string or torch.dtype) -> the torch dtype ``device`` can
    train in (``saebench_sanity.devices``)."""
    from saebench_sanity.devices import resolve_dtype as resolve

    name = str(dtype).removeprefix("torch.")
    return resolve(name, str(device))


_ALLOCATOR_TUNED = False


def tune_allocator() -> None:
    """Keep freed large blocks in the process heap (glibc ``mallopt``; a no-op elsewhere).

    A training step allocates and frees the same 10-50 MB tensors every step; above glibc's
    mmap threshold each one comes back from the kernel as fresh pages, and the page faults cost
    ~7% of a 576 x 1152 cohort step and ~6x on a 50 MB ``zeros`` (one-off measurements with the
    torch profiler; the solo step's time did not change). Raising the mmap / trim thresholds (256 / 512 MB) makes them reuse heap memory.
    Process-wide and permanent, so only processes the suite owns call it (the harness's
    ``execute`` and its pool workers), never ``train_cohort`` itself: a library user's process
    keeps glibc's defaults. A training worker's resident memory then stays at its peak instead of
    shrinking between steps."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc malloc.h
    libc.mallopt(m_mmap_threshold, 256 << 20)
    libc.mallopt(m_trim_threshold, 512 << 20)


def _batchable_mode(mode: Any) -> bool:
    """Modes whose per-step hook the engine reproduces: none (base no-op) or the soft-frozen
    decoder's projection (exactly that class: a plugin subclass may do something else)."""
    from saebench_sanity.training.base import TrainingMode
    from saebench_sanity.training.modes import SoftFrozenDecoder

    return type(mode).after_step is TrainingMode.after_step or type(mode) is SoftFrozenDecoder


def _fused_adam_ok(device: Any, dtype: Any) -> bool:
    """torch's fused Adam kernel exists for this device / dtype (CPU and CUDA, float types)."""
    import torch

    if device.type not in ("cpu", "cuda"):
        return False
    try:  # probe once on a scalar: older builds lack the CPU kernel
        from torch.optim.adam import adam

        p = torch.zeros(2, dtype=dtype, device=device)
        adam([p], [torch.ones_like(p)], [torch.zeros_like(p)], [torch.zeros_like(p)], [],
             [torch.zeros((), dtype=torch.float32, device=device)], fused=True, amsgrad=False, beta1=0.9,
             beta2=0.999, lr=1e-3, weight_decay=0.0, eps=1e-8, maximize=False)
        return True
    except (RuntimeError, NotImplementedError):
        return False


def _feature_sampling_window(training: "TrainingConfig", max_steps: int) -> int:
    # as CellTrainer: the last window's firing statistics give l0_train
    return max(1, math.ceil(max_steps * float(training.convergence_window)))


class _ParamView:
    def __init__(self, getter: Callable[[str], Any]) -> None:
        self._get = getter

    def param(self, name: str) -> Any:
        return self._get(name)


def _param_copy(sae: Any, name: str) -> Any:
    """A detached copy of the solo SAE's parameter ``name`` (what a control's ``view.param`` reads)."""
    return getattr(sae, name).detach().clone()


class MemberTrack:
    """Per-member bookkeeping shared by both paths (``index``: position in ``train_cohort``'s list)."""

    def __init__(self, index: int, member: Member, path: str) -> None:
        self.index, self.member, self.path = index, member, path
        self.max_steps = int(member.control.max_steps)
        if self.max_steps < 1:
            raise ConfigError(f"member {member.name or index}: control.max_steps = {self.max_steps} must be >= 1")
        self.curves: dict[str, list[tuple[int, float]]] = {}
        self.result: MemberResult | None = None


class CohortProgram:
    """The stacked program of one group of batched members (same arch class and shapes).

    ``train_cohort`` drives it; ``step(x, n_steps, step)`` is the whole per-step path (used
    directly by benchmarks/test_bench_cohort.py). Build with ``CohortProgram(arch, [MemberTrack(i,
    member, "batched"), ...], training, torch.device(...), dtype)``."""

    def __init__(self, arch: Any, tracks: list[MemberTrack], training: "TrainingConfig", device: Any, dtype: Any) -> None:
        import torch

        from saebench_sanity.training.modes import ConeProjection, SoftFrozenDecoder

        self.arch, self.tracks, self.training = arch, list(tracks), training
        self.device, self.dtype = device, dtype
        #: on the CPU a host read is free, so the step reads values to skip work it can see is not
        #: needed; elsewhere (and in tests forcing them, ``batched.base.accelerator_paths``) it never reads
        self.host_reads = not accelerator_paths(device)
        saes = [t.member.sae for t in tracks]
        M = len(saes)
        self.transposed = tuple(getattr(arch, "transposed", ()))
        self.names = tuple(arch.param_names)
        self.store: dict[str, Any] = {}
        self.trainable: dict[str, Any] = {}  # name -> [M] bool on device
        self.any_frozen: dict[str, bool] = {}
        for name in self.names:
            t = torch.stack([getattr(s, name).detach() for s in saes]).to(device=device, dtype=dtype)
            if name in self.transposed:
                t = t.transpose(1, 2)
            self.store[name] = t.contiguous().requires_grad_(True)
            flags = [bool(getattr(s, name).requires_grad) for s in saes]
            self.trainable[name] = torch.tensor(flags, device=device)
            self.any_frozen[name] = not all(flags)
        self.trainable_host = {n: [bool(getattr(s, n).requires_grad) for s in saes] for n in self.names}
        self.exp_avg = {n: torch.zeros_like(self.store[n]) for n in self.names}
        self.exp_avg_sq = {n: torch.zeros_like(self.store[n]) for n in self.names}
        # Adam's per-tensor step counters (torch keeps them as float32 tensors on the param's device)
        self.steps = {n: [torch.zeros((), dtype=torch.float32, device=device) for _ in saes] for n in self.names}
        self.fused = _fused_adam_ok(device, dtype)
        self._slices: dict[str, tuple] | None = None
        state = arch.init_state(saes)
        # keys "host_*" (per member) and "shared_*" (whole cohort) stay on the CPU: Python-side config
        self.state = {k: (v if k.startswith(_HOST) else v.to(device)) for k, v in state.items()}
        # sae-lens coefficient schedulers (sparsity warm-up), one per member and coefficient
        from sae_lens.saes.sae import TrainCoefficientConfig
        from sae_lens.training.optim import CoefficientScheduler

        self.coef_scheds: list[dict[str, Any]] = []
        for s in saes:
            scheds = {}
            for cname, c in s.get_coefficients().items():
                if not isinstance(c, TrainCoefficientConfig):
                    c = TrainCoefficientConfig(value=c, warm_up_steps=0)
                scheds[cname] = CoefficientScheduler(warm_up_steps=c.warm_up_steps, final_value=c.value)
            self.coef_scheds.append(scheds)
        d_sae = int(saes[0].cfg.d_sae)
        self.d_sae = d_sae
        # sae-lens keeps these in the default dtype (float32) on its device
        self.n_since_fired = torch.zeros(M, d_sae, device=device)
        self.act_freq = torch.zeros(M, d_sae, device=device)
        self.n_frac = [0] * M
        self.windows = [_feature_sampling_window(training, t.max_steps) for t in tracks]
        self.dead_window = int(training.dead_feature_window)
        # soft-frozen members: their initial directions, grouped by min_cos
        # (member position, d0 [d_sae, d_in] on device in the working dtype, its ConeProjection)
        self.soft: list[tuple[int, Any, ConeProjection]] = []
        for i, track in enumerate(tracks):
            if type(track.member.mode) is SoftFrozenDecoder:
                d0 = track.member.mode._d0.to(device=device, dtype=dtype)
                self.soft.append((i, d0, ConeProjection(d0, float(track.member.mode.params["min_cos"]))))
        self.acc_keys: list[str] = []  # names of the rows of acc_sum
        self.acc_sum: Any = None  # [K, M] float64 sums over the current curve interval
        self.acc_n = 0
        self.first_bad = torch.full((M,), -1, dtype=torch.long, device=device)
        self.saw_bad = False  # a non-finite loss was seen (CPU: checked every step)
        self.bad_loss = torch.zeros(M, dtype=torch.float64, device=device)
        self._lr_key: tuple | None = None
        self._step_size = None
        import sae_lens

        for s in saes:  # as SAETrainer.__init__ does
            s.cfg.sae_lens_training_version = str(sae_lens.__version__)

    # -- views --------------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {n: (self.store[n].transpose(1, 2) if n in self.transposed else self.store[n]) for n in self.names}

    def member_param(self, pos: int, name: str) -> Any:
        t = self.store[name][pos].detach()
        return (t.T if name in self.transposed else t).clone()

    # -- one step -----------------------------------------------------------------------------------
    def step(self, x: Any, n_steps: int, step: int) -> None:
        """Optimizer step ``step`` (1-based; ``n_steps = step - 1`` completed before it) on ``x``."""
        import torch

        from saebench_sanity.training.batched.base import StepCtx

        M = len(self.tracks)
        for i in range(M):  # maybe_reset_sparsity
            if n_steps > 0 and n_steps % self.windows[i] == 0:
                self.act_freq[i].zero_()
                self.n_frac[i] = 0
        coefs: dict[str, Any] = {}
        if self.coef_scheds and self.coef_scheds[0]:
            for cname in self.coef_scheds[0]:
                coefs[cname] = torch.tensor([s[cname].value * coefficient_scale(t.member.control, cname)
                                             for s, t in zip(self.coef_scheds, self.tracks)],
                                            dtype=torch.float64, device=self.device)
        dead = self.n_since_fired > self.dead_window if n_steps > self.dead_window else None
        ctx = StepCtx(step=n_steps, coefficients=coefs, dead_neuron_mask=dead)
        out = self.arch.loss(self.params(), x, self.state, ctx)
        self.arch.update_state(self.state, self.params(), x, ctx)
        with torch.no_grad():
            fired = out.fire_counts > 0
            self.n_since_fired.add_(1).masked_fill_(fired, 0)
            self.act_freq.add_(out.fire_counts.to(self.act_freq.dtype))
            B = x.shape[0]
            self.n_frac = [n + int(self.training.batch_size) for n in self.n_frac]  # sae-lens counts the configured size
            total = out.total.detach()
            # on CPU a read is free: only a non-finite step pays for the bookkeeping (and sets
            # ``saw_bad``, which has failures read at once); elsewhere it runs on the device every
            # step and is read at the next curve point
            if not self.host_reads or not bool(torch.isfinite(total).all()):
                self.saw_bad = self.saw_bad or self.host_reads
                new_bad = ~torch.isfinite(total) & (self.first_bad < 0)
                self.first_bad = torch.where(new_bad, torch.full_like(self.first_bad, step), self.first_bad)
                self.bad_loss = torch.where(new_bad, total.to(torch.float64), self.bad_loss)
            # one [K, M] float64 row per step: "loss", the sae-lens loss terms, "l0"
            if not self.acc_keys:
                self.acc_keys = ["loss", *out.losses, "l0"]
            row = torch.stack([total, *(out.losses[k] for k in self.acc_keys[1:-1]), out.fire_counts.sum(-1) / B])
            row = row.detach().to(torch.float64)
            self.acc_sum = row if self.acc_sum is None else self.acc_sum.add_(row)
            self.acc_n += 1
        out.total.sum().backward()
        self._adam(step)
        self._project()
        for scheds in self.coef_scheds:
            for s in scheds.values():
                s.step()

    def _adam(self, step: int) -> None:
        """Clip per member, then Adam with each member's lr.

        torch's functional ``adam`` (the code behind ``torch.optim.Adam``; fused kernel where the
        device has one) takes one lr per call, so it runs on per-member slices grouped by lr. A
        frozen (member, tensor) slice is left out: no update, no moments, bit-identical."""
        import torch
        from torch.optim.adam import adam

        M = len(self.tracks)
        with torch.no_grad():
            sq = torch.zeros(M, dtype=self.dtype, device=self.device)
            for n in self.names:
                g = self.store[n].grad
                if g is None:
                    g = self.store[n].grad = torch.zeros_like(self.store[n])
                s = torch.linalg.vector_norm(g.reshape(M, -1), dim=1).pow(2)
                if self.any_frozen[n]:
                    s = torch.where(self.trainable[n], s, torch.zeros_like(s))
                sq = sq + s
            # clip_grad_norm_(max_norm=1): coef = max_norm / (total_norm + 1e-6), clamped at 1
            coef = torch.clamp(CLIP_NORM / (sq.sqrt() + 1e-6), max=1.0)
            groups: dict[float, tuple[list, list, list, list, list]] = {}
            lrs = [self._lr(tr, step) for tr in self.tracks]
            if self._slices is None:  # per-member views of the stacked state (rebuilt after remove())
                self._slices = {n: (self.store[n].unbind(0), self.exp_avg[n].unbind(0), self.exp_avg_sq[n].unbind(0))
                                for n in self.names}
            # clip_grad_norm_ multiplies by the coefficient even when it is 1.0 (an exact no-op):
            # on CPU (reads are free) only members whose coefficient is below 1 pay for the pass
            coef_host = coef.tolist() if self.host_reads else None
            for n in self.names:
                g = self.store[n].grad
                gs = g.unbind(0)
                if coef_host is None:
                    g.mul_(coef.view((M,) + (1,) * (g.ndim - 1)))
                else:
                    for m, c in enumerate(coef_host):
                        if c != 1.0:
                            gs[m].mul_(c)
                ps, eas, esqs = self._slices[n]
                for m in range(M):
                    if not self.trainable_host[n][m]:
                        continue
                    lists = groups.setdefault(lrs[m], ([], [], [], [], []))
                    lists[0].append(ps[m])
                    lists[1].append(gs[m])
                    lists[2].append(eas[m])
                    lists[3].append(esqs[m])
                    lists[4].append(self.steps[n][m])
            for lr, (ps, gs, eas, esqs, steps) in groups.items():
                if self.fused:
                    # what torch.optim.Adam(fused=True) runs (torch.optim.adam._fused_adam) minus
                    # its per-call regrouping by device / dtype: ours share both by construction
                    torch._foreach_add_(steps, 1)
                    torch._fused_adam_(ps, gs, eas, esqs, [], steps, amsgrad=False, lr=lr, beta1=ADAM_BETAS[0],
                                       beta2=ADAM_BETAS[1], weight_decay=0.0, eps=ADAM_EPS, maximize=False)
                else:
                    adam(ps, gs, eas, esqs, [], steps, fused=False, foreach=False, amsgrad=False,
                         beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], lr=lr, weight_decay=0.0, eps=ADAM_EPS,
                         maximize=False)
            for n in self.names:
                self.store[n].grad = None

    def _lr(self, track: MemberTrack, step: int) -> float:
        # the same arithmetic as CellTrainer.step(batch, lr_factor)
        return float(self.training.lr) * float(track.member.control.lr_factor(step))

    def _project(self) -> None:
        """The soft-frozen projection of ``modes.project_to_cone`` on every soft-frozen member
        (``modes.ConeProjection``, the same float64 formula).

        CPU: rows whose cosine (working dtype) clears ``min_cos`` by more than its rounding bound
        are inside the cone in float64 too and are left alone, exactly as ``project_to_cone``
        would; the others go through the projection (when they are most of the rows, the whole
        matrix does: rows inside come back unchanged, and the gathers are saved). Other devices:
        the same formula on every row without its host-side checks (no device read per step)."""
        import torch

        if not self.soft:
            return
        W = self.store["W_dec"]
        d_in = W.shape[-1]
        margin = 8 * d_in * torch.finfo(self.dtype).eps
        with torch.no_grad():
            for pos, d0, cone in self.soft:
                w = W[pos]
                if not self.host_reads:
                    w.copy_(cone(w, host_checks=False))
                    continue
                cos = (w * d0).sum(-1) / w.norm(dim=-1).clamp(min=1e-30)
                cand = torch.nonzero(cos < cone.min_cos + margin).squeeze(1)
                if cand.numel() == 0:
                    continue
                if 2 * cand.numel() > w.shape[0]:
                    new = cone(w)
                    if new is not w:
                        w.copy_(new)
                    continue
                rows = w.index_select(0, cand)
                new = cone(rows, cand)
                if new is not rows:
                    w.index_copy_(0, cand, new)

    # -- reading results ----------------------------------------------------------------------------
    def read_interval(self) -> list[dict[str, float]]:
        """Per member, the interval means since the last read (one device read)."""

        keys = list(self.acc_keys)
        if self.acc_sum is None or self.acc_n == 0:
            return [{} for _ in self.tracks]
        table = self.acc_sum.cpu() / self.acc_n
        self.acc_sum, self.acc_n = None, 0
        out = []
        for i in range(len(self.tracks)):
            vals = {k: float(table[j, i]) for j, k in enumerate(keys)}
            vals["mse"] = vals.pop("mse_loss", math.nan)  # one name for it (the solo path says "mse" too)
            out.append(vals)
        return out

    def failures(self) -> list[tuple[int, float] | None]:
        fb = self.first_bad.tolist()
        bl = self.bad_loss.tolist()
        return [(s, bl[i]) if s >= 0 else None for i, s in enumerate(fb)]

    def finish_member(self, pos: int) -> tuple[float, float]:
        """Write member ``pos`` back into its sae; return ``(dead_fraction, l0_train)``."""

        sae = self.tracks[pos].member.sae
        p = {n: v[pos:pos + 1].detach() for n, v in self.params().items()}
        st = {k: v if k.startswith("shared_") else v[pos:pos + 1] for k, v in self.state.items()}
        self.arch.write_back(p, st, [sae])
        sae.train()
        dead_mask = self.n_since_fired[pos] > self.dead_window
        dead = float(dead_mask.float().mean())
        n = self.n_frac[pos]
        # sae-lens's feature_sparsity.sum() (float32 per-latent frequencies, then the sum)
        l0 = float((self.act_freq[pos] / n).sum()) if n else math.nan
        if n:  # SAETrainer.set_final_sae_metadata
            sae.cfg.metadata.l0 = l0
            sae.cfg.metadata.num_dead_features = int(dead_mask.sum())
        return dead, l0

    def remove(self, positions: list[int]) -> None:
        """Drop stopped members from the stacked program."""
        import torch

        M = len(self.tracks)
        self._slices = None
        keep = [i for i in range(M) if i not in set(positions)]
        kd = torch.tensor(keep, dtype=torch.long, device=self.device)
        kh = torch.tensor(keep, dtype=torch.long)
        for n in self.names:
            self.store[n] = self.store[n].detach().index_select(0, kd).contiguous().requires_grad_(True)
            self.exp_avg[n] = self.exp_avg[n].index_select(0, kd)
            self.exp_avg_sq[n] = self.exp_avg_sq[n].index_select(0, kd)
            self.trainable[n] = self.trainable[n].index_select(0, kd)
            self.trainable_host[n] = [self.trainable_host[n][i] for i in keep]
            self.steps[n] = [self.steps[n][i] for i in keep]
        self.state = {k: v if k.startswith("shared_") else v.index_select(0, kh if k.startswith("host_") else kd)
                      for k, v in self.state.items()}
        self.n_since_fired = self.n_since_fired.index_select(0, kd)
        self.act_freq = self.act_freq.index_select(0, kd)
        self.first_bad = self.first_bad.index_select(0, kd)
        self.bad_loss = self.bad_loss.index_select(0, kd)
        if self.acc_sum is not None:
            self.acc_sum = self.acc_sum.index_select(1, kd)
        self.n_frac = [self.n_frac[i] for i in keep]
        self.windows = [self.windows[i] for i in keep]
        self.coef_scheds = [self.coef_scheds[i] for i in keep]
        remap = {old: new for new, old in enumerate(keep)}
        self.soft = [(remap[pos], d0, cone) for pos, d0, cone in self.soft if pos in remap]
        self.tracks = [self.tracks[i] for i in keep]


class _Solo:
    """A member on the solo path: ``CellTrainer`` (sae-lens ``SAETrainer``) stepped in lockstep."""

    def __init__(self, track: MemberTrack, training: "TrainingConfig", set_name: str) -> None:
        from saebench_sanity.training.trainer import CellTrainer

        self.track = track
        self.cell = CellTrainer(track.member.sae, track.member.mode, training, total_steps=track.max_steps,
                                set_name=set_name)
        self.acc: dict[str, float] = {}
        self.acc_n = 0
        self.failure: tuple[int, float] | None = None

    def step(self, batch: Any, step: int) -> None:
        tr = self.cell.trainer
        before = float(tr.act_freq_scores.sum())
        n_before = tr.n_frac_active_samples
        control = self.track.member.control
        scales = {n: coefficient_scale(control, n) for n in getattr(control, "scaled_coefficients", ())}
        loss, mse = self.cell.step(batch, control.lr_factor(step), coefficient_scales=scales)
        after = float(tr.act_freq_scores.sum())
        # the sparsity window may have been reset inside step(): then only this batch is counted
        fired = after if tr.n_frac_active_samples <= n_before else after - before
        l0 = fired / batch.shape[0]
        if not math.isfinite(loss) and self.failure is None:
            self.failure = (step, loss)
        for k, v in (("loss", loss), ("mse", mse), ("l0", l0)):
            self.acc[k] = self.acc.get(k, 0.0) + v
        self.acc_n += 1

    def read_interval(self) -> dict[str, float]:
        vals = {k: v / self.acc_n for k, v in self.acc.items()} if self.acc_n else {}
        self.acc, self.acc_n = {}, 0
        return vals


def train_cohort(members: list[Member], batches: Iterator[Any], training: "TrainingConfig", *,
                 device: Any = "cpu", dtype: Any = "float32", set_name: str = "?",
                 progress: Callable[[int, int, int], None] | None = None) -> list[MemberResult]:
    """Train ``members`` on the identical batch each step; one ``MemberResult`` per member, in order.

    ``batches`` yields ``[B, d_in]`` activations (validated like ``train_cell``: DataError on a
    bad batch or an exhausted stream). ``device`` / ``dtype`` are those of the batched program
    (the solo path keeps sae-lens's own CPU / sae dtype). ``progress(step, max_steps, n_active)``
    is called at every curve point.
    """

    from saebench_sanity.training.batched import batched_for
    from saebench_sanity.training.trainer import check_batch

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if not members:
        return []
    d_ins = {int(m.sae.cfg.d_in) for m in members}
    if len(d_ins) != 1:
        raise ConfigError(f"train_cohort: members have different d_in {sorted(d_ins)}; a cohort shares its batches")
    d_in = d_ins.pop()
    tracks = []
    for i, m in enumerate(members):
        if not bool(getattr(m.mode, "trains", True)):
            raise ConfigError(f"train_cohort: member {m.name or i} has a mode that takes no steps ({type(m.mode).__name__})")
        tracks.append(MemberTrack(i, m, "batched"))
    groups: dict[tuple, tuple[Any, list[MemberTrack]]] = {}
    solos: list[_Solo] = []
    for tr in tracks:
        arch = batched_for(tr.member.sae) if _batchable_mode(tr.member.mode) else None
        if arch is None:
            tr.path = "solo"
            solos.append(_Solo(tr, training, set_name))
            continue
        key = (type(arch), arch.group_key(tr.member.sae) if hasattr(arch, "group_key") else
               (type(tr.member.sae).__name__, int(tr.member.sae.cfg.d_sae)))
        groups.setdefault(key, (arch, []))[1].append(tr)
    cohorts = [CohortProgram(arch, trs, training, dev, dt) for arch, trs in groups.values()]
    log.info("cohort on %s: %d batched member(s) in %d program(s), %d solo", set_name,
             sum(len(c.tracks) for c in cohorts), len(cohorts), len(solos))

    every = int(training.curve_every)
    max_total = max(t.max_steps for t in tracks)
    sync_every_step = not accelerator_paths(dev)
    t0 = time.perf_counter()
    step = 0
    while any(c.tracks for c in cohorts) or solos:
        step += 1
        try:
            batch = next(batches)
        except StopIteration:
            raise DataError(f"activation set {set_name!r} ran out of batches after {step - 1} steps; "
                            "train_batches must be endless") from None
        batch = check_batch(batch, d_in, set_name)
        x = batch.to(device=dev, dtype=dt, non_blocking=True)
        for c in cohorts:
            if c.tracks:
                c.step(x, step - 1, step)
        for s in solos:
            s.step(batch, step)
        # -- observations, stops and failures ------------------------------------------------------
        for c in cohorts:
            if not c.tracks:
                continue
            boundary = step % every == 0 or any(step == t.max_steps for t in c.tracks)
            fails = c.failures() if (c.saw_bad or (boundary and not sync_every_step)) else [None] * len(c.tracks)
            stop: list[int] = []
            values = c.read_interval() if boundary else None
            for pos, tr in enumerate(c.tracks):
                fail = fails[pos]
                if fail is not None:
                    _finish(c, pos, tr, fail[0], t0, failure=fail)
                    stop.append(pos)
                    continue
                if values is None and step != tr.max_steps:
                    continue
                if values is not None and values[pos]:
                    _record(tr, step, values[pos])
                    view = _ParamView(functools.partial(c.member_param, pos))
                    by_control = bool(tr.member.control.observe(step, values[pos], view)) and step < tr.max_steps
                else:
                    by_control = False
                if by_control or step >= tr.max_steps:
                    _finish(c, pos, tr, step, t0, by_control=by_control)
                    stop.append(pos)
            if stop:
                c.remove(stop)
        still: list[_Solo] = []
        for s in solos:
            tr = s.track
            if s.failure is not None:
                dead, l0 = s.cell.finish()
                tr.result = MemberResult(sae=tr.member.sae, steps=s.failure[0], seconds=time.perf_counter() - t0,
                                         failure=s.failure, path="solo", dead_fraction=dead, l0_train=l0)
                _attach_curves(tr)
                log.warning("member %s diverged at step %d (loss %s); the others go on",
                            tr.member.name or tr.index, s.failure[0], s.failure[1])
                continue
            by_control = False
            if step % every == 0 or step == tr.max_steps:
                vals = s.read_interval()
                _record(tr, step, vals)
                view = _ParamView(functools.partial(_param_copy, tr.member.sae))
                by_control = bool(tr.member.control.observe(step, vals, view)) and step < tr.max_steps
            if by_control or step >= tr.max_steps:
                dead, l0 = s.cell.finish()
                tr.result = MemberResult(sae=tr.member.sae, steps=step, seconds=time.perf_counter() - t0,
                                         stopped_by_control=by_control, path="solo", dead_fraction=dead, l0_train=l0)
                _attach_curves(tr)
            else:
                still.append(s)
        solos = still
        if progress is not None and (step % every == 0 or step == max_total):
            progress(step, max_total, sum(len(c.tracks) for c in cohorts) + len(solos))
    return [t.result for t in tracks]  # type: ignore[misc]


def _record(tr: MemberTrack, step: int, values: Mapping[str, float]) -> None:
    for k, v in values.items():
        tr.curves.setdefault(k, []).append((step, float(v)))


def _attach_curves(tr: MemberTrack) -> None:
    if tr.result is None:  # a member's result exists once it finished; anything else is a bug here
        raise RuntimeError("training engine: curves attached to a member that has no result")
    tr.result.curves = tr.curves
    tr.result.loss_curve = list(tr.curves.get("loss", []))
    tr.result.mse_curve = list(tr.curves.get("mse", []))


def _finish(c: CohortProgram, pos: int, tr: MemberTrack, steps: int, t0: float, *, failure: tuple[int, float] | None = None,
            by_control: bool = False) -> None:
    dead, l0 = c.finish_member(pos)
    tr.result = MemberResult(sae=tr.member.sae, steps=steps, seconds=time.perf_counter() - t0, failure=failure,
                             stopped_by_control=by_control, path="batched", dead_fraction=dead, l0_train=l0)
    _attach_curves(tr)
    if failure is not None:
        log.warning("member %s diverged at step %d (loss %s); the others go on", tr.member.name or tr.index, *failure)
