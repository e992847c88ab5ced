"""Save a trained SAE in the SAELens on-disk format and load it back.

``save_checkpoint`` writes sae-lens's *inference* form (``TrainingSAE.save_inference_model``:
TopK decoder norms folded into the encoder, BatchTopK/Matryoshka turned into a JumpReLU SAE with
the learned batch threshold), so ``sae_lens.SAE.load_from_disk(path)`` loads it with plain
sae-lens and every metric scores exactly what a user would download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saebench_sanity.errors import ConfigError, DataError

#: ``cfg.metadata`` key of a checkpoint saved with its training activations' scale folded into
#: its weights (``fold_activation_scale``): the factor folded in. Such a checkpoint takes raw
#: model activations; a real-set checkpoint without it was saved before folding existed and takes
#: the set's normalized activations (``activations.real.checkpoint_in_set_space``).
FOLDED_SCALE_KEY = "saebench_folded_activation_scale"

#: ``cfg.metadata`` key naming the activation set a checkpoint was trained on
#: (``activations.real.checkpoint_metadata``); ``saebench check`` uses it when given no --set.
SET_METADATA_KEY = "saebench_activation_set"


def save_checkpoint(sae: Any, path: str | Path, calibration_acts: Any = None, batch_size: int = 1024,
                    activation_scale: float = 1.0, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``sae`` (a sae-lens ``TrainingSAE``) to folder ``path`` as an inference SAE.

    A BatchTopK-family SAE whose batch threshold was never set (0-step cells) is calibrated first
    on ``calibration_acts`` ``[n, d_in]`` (see ``architectures.batchtopk``); without them this
    raises ConfigError rather than writing a JumpReLU SAE with threshold 0.

    ``activation_scale``: the factor the training activations were multiplied by (a real set's
    normalization, ``activations.real.set_scale``); when it is not 1 it is folded into the saved
    weights (``fold_activation_scale``), so the checkpoint takes raw model activations.

    ``metadata``: entries added to the saved ``cfg.metadata`` (``activations.real.checkpoint_metadata``:
    the set, and for a real set SAELens's ``model_name``, ``hook_name``...).
    """
    from saebench_sanity.architectures.batchtopk import calibrate_threshold, has_batch_threshold

    if has_batch_threshold(sae) and float(sae.topk_threshold) == 0.0:
        if calibration_acts is None:
            raise ConfigError(f"cannot save {type(sae).__name__} to {str(path)!r}: its batch threshold was never "
                              "set; train it or pass calibration_acts")
        calibrate_threshold(sae, calibration_acts, batch_size)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sae.save_inference_model(path)
    if float(activation_scale) != 1.0:
        fold_activation_scale(path, float(activation_scale))
    if metadata:
        _add_metadata(path, metadata)
    return path


def _add_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Add ``metadata`` to the saved cfg's ``metadata`` (the JSON edited in place: loading and
    saving through sae-lens again would rewrite the weights file for a few cfg entries)."""
    import json

    from sae_lens.constants import SAE_CFG_FILENAME

    from saebench_sanity.io import atomic_write_text

    cfg_path = path / SAE_CFG_FILENAME
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["metadata"] = {**(cfg.get("metadata") or {}), **metadata}
    atomic_write_text(cfg_path, json.dumps(cfg))  # compact, as sae-lens writes it


def fold_activation_scale(path: str | Path, scale: float) -> None:
    """Rewrite the inference SAE in ``path`` to take raw activations: sae-lens's
    ``fold_activation_norm_scaling_factor(scale)`` (what SAELens's trainer does before saving:
    ``W_enc * scale``, ``W_dec / scale``, ``b_dec / scale``; cfg ``normalize_activations =
    "none"``), with the factor recorded in ``cfg.metadata`` (``FOLDED_SCALE_KEY``).

    Folded into the *inference* form rather than the training SAE (SAELens's order), so the
    saved latents equal the trained SAE's on the activations it was trained on: folding first
    would scale a TopK SAE's latents by ``1 / scale`` once sae-lens folds its decoder norms into
    the encoder on saving; the reconstruction is the same either way."""
    from sae_lens import SAE

    inference = SAE.load_from_disk(str(path), device="cpu")
    inference.fold_activation_norm_scaling_factor(scale)
    inference.cfg.metadata[FOLDED_SCALE_KEY] = scale
    inference.save_model(path)


def load_checkpoint(path: str | Path, device: str = "cpu") -> Any:
    """Load an SAELens SAE folder (``cfg.json`` + ``sae_weights.safetensors``) as an inference
    ``sae_lens.SAE`` on ``device`` (a resolved device string, ``"cpu"``, ``"cuda:0"``, ``"mps"``:
    the harness and ``saebench check`` pass the run's, so metrics score it there), in the dtype
    its cfg names; DataError if ``path`` is not one."""
    from sae_lens import SAE
    from sae_lens.constants import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"SAE checkpoint {str(path)!r} is not a folder; pass a folder written by save_checkpoint or SAELens")
    missing = [n for n in (SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME) if not (path / n).is_file()]
    if missing:
        raise DataError(f"SAE checkpoint {str(path)!r} is not an SAELens SAE folder (missing {', '.join(missing)}); "
                        "re-save it with save_checkpoint")
    try:
        return SAE.load_from_disk(str(path), device=device)
    except Exception as exc:  # noqa: BLE001 - any failure here means a corrupt/foreign folder
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(f"SAE checkpoint {str(path)!r} could not be loaded by SAELens ({type(exc).__name__}: {msg}); "
                        "re-save it with save_checkpoint") from None
