"""Device and dtype options: resolved against this machine, refused with one line before work starts."""

import pytest
import torch

from saebench_sanity.cli import main
from saebench_sanity.config import from_dict
from saebench_sanity.devices import available_devices, resolve_device, resolve_dtype
from saebench_sanity.errors import ConfigError


def test_auto_picks_the_best_available_device():
    have = available_devices()
    assert have[-1] == "cpu"
    expected = "cuda:0" if torch.cuda.is_available() else have[0]
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "cuda0", "cuda:", "CPU", "", 3])
def test_malformed_device_names_are_refused(bad):
    with pytest.raises(ConfigError, match="not a device; use one of auto, cpu, cuda, cuda:N, mps"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_request_without_cuda_names_what_is_available():
    with pytest.raises(ConfigError, match=r"'cuda' is not available on this machine; available: .*cpu"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="'cuda:1' is not available"):
        resolve_device("cuda:1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_resolves_to_the_first_gpu():
    assert resolve_device("cuda") == "cuda:0"
    assert resolve_dtype("bfloat16", "cuda:0") is torch.bfloat16


def test_dtypes():
    assert resolve_dtype("float64", "cpu") is torch.float64
    assert resolve_dtype("float32", "cpu") is torch.float32
    with pytest.raises(ConfigError, match="float64' is not supported on mps"):
        resolve_dtype("float64", "mps")
    with pytest.raises(ConfigError, match="'float16' is not supported; use one of float32, float64, bfloat16"):
        resolve_dtype("float16", "cpu")


def test_run_config_validates_device_and_dtype():
    base = {"run": {"sets": ["synth-easy"], "architectures": ["topk"], "modes": ["trained"]}}
    cfg = from_dict({"run": {**base["run"], "device": "cpu", "dtype": "float64"}})
    assert (cfg.device, cfg.dtype) == ("cpu", "float64")
    assert (from_dict(base).device, from_dict(base).dtype) == ("auto", "float32")
    with pytest.raises(ConfigError, match="run.device = 'tpu'"):
        from_dict({"run": {**base["run"], "device": "tpu"}})
    with pytest.raises(ConfigError, match="run.dtype = 'half'"):
        from_dict({"run": {**base["run"], "dtype": "half"}})


@pytest.mark.parametrize("argv, message", [
    (["--device", "gpu"], "error: --device = 'gpu' is not a device"),
    (["--dtype", "float16"], "error: --dtype = 'float16' is not supported"),
])
def test_cli_refuses_bad_device_options_with_exit_2(argv, message, capsys, tmp_path):
    code = main(["run", "--quick", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_refuses_cuda_without_cuda(capsys, tmp_path):
    assert main(["run", "--quick", "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert "--device = 'cuda' is not available on this machine" in capsys.readouterr().err
