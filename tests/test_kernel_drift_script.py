"""scripts/kernel-drift.py's --env option, which docs/limitations.md's MKL paragraph is measured with:
settings are split on ';' (MKL_CBWR's values hold commas), and the folders are named after them."""

import argparse

import pytest
from _scripts import load_script


def _script():
    return load_script("kernel-drift.py")


def test_env_settings_keep_commas_and_name_their_folders():
    kd = _script()
    env = kd.parse_env("MKL_CBWR=AVX2,STRICT; ATEN_CPU_CAPABILITY=avx2")
    assert env == {"MKL_CBWR": "AVX2,STRICT", "ATEN_CPU_CAPABILITY": "avx2"}
    assert kd.env_label(env) == "ATEN_CPU_CAPABILITY=avx2-MKL_CBWR=AVX2+STRICT"
    assert kd.env_label(dict(kd.CAPPED)) == "capped"


@pytest.mark.parametrize("text", ["MKL_CBWR", "=AVX2", "", " ; "])
def test_env_settings_without_a_name_and_value_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        _script().parse_env(text)
