"""SAEBench's sparse-probing datasets, loaded by name through ``datasets`` when online.

``path`` is anything ``datasets.load_dataset`` accepts: a hub id (``"fancyzhx/ag_news"``) or a
local folder / data file (how the tests exercise this path offline). Labels may be ints with a
``ClassLabel`` feature (mapped to their names) or strings. ``classes`` picks the labels SAEBench
uses (its ``chosen_classes_per_dataset``); ``max_rows`` caps how many rows are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saebench_sanity.errors import DataError
from saebench_sanity.probing_tasks.base import ProbingTask, make_task

#: SAEBench's hub datasets: registry name -> load_dataset arguments and columns.
HUB_TASKS: dict[str, dict[str, Any]] = {
    "bias_in_bios": {"path": "LabHC/bias_in_bios", "split": "train", "text_column": "hard_text",
                     "label_column": "profession", "classes": ["0", "1", "2", "6", "9"]},
    "amazon_reviews": {"path": "canrager/amazon_reviews_mcauley_1and5", "split": "train", "text_column": "text",
                       "label_column": "category", "classes": None},
    "europarl": {"path": "Helsinki-NLP/europarl", "config": "en-fr", "split": "train", "text_column": None,
                 "label_column": None, "classes": None},
    "github_code": {"path": "codeparrot/github-code", "split": "train", "text_column": "code",
                    "label_column": "language", "classes": ["C", "Python", "HTML", "Java", "PHP"]},
    "ag_news": {"path": "fancyzhx/ag_news", "split": "train", "text_column": "text", "label_column": "label",
                "classes": ["0", "1", "2", "3"]},
}


def load_hub_task(name: str, path: str, text_column: str | None, label_column: str | None, split: str = "train",
                  classes: list[str] | None = None, n_train: int = 48, n_test: int = 24, seed: int = 0,
                  max_rows: int = 20000, max_chars: int = 600, data_files: Any = None, config: str | None = None,
                  **load_kwargs: Any) -> ProbingTask:
    """A balanced split of a ``datasets`` dataset (hub id or local folder/file).

    Labels are compared as strings (``ClassLabel`` ints become their index as a string, so
    SAEBench's numeric class choices work). Europarl-style translation rows
    (``{"translation": {lang: text}}``) become one example per language, labelled by language.
    """
    try:
        import datasets
    except ImportError as exc:
        raise DataError(f"probing task {name!r} needs the `datasets` package; run `pip install datasets`") from exc
    kwargs = dict(load_kwargs)
    if config is not None:
        kwargs["name"] = config
    if data_files is not None:
        kwargs["data_files"] = data_files
    target = path
    local = Path(path).expanduser()
    if local.is_file():
        suffix = local.suffix.lstrip(".")
        target, kwargs["data_files"] = {"jsonl": "json"}.get(suffix, suffix), str(local)
    try:
        ds = datasets.load_dataset(target, split=split, **kwargs)
    except Exception as exc:  # noqa: BLE001 - network, missing dataset, bad file: all the user's to fix
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"probing task {name!r}: cannot load dataset {path!r} ({msg}); it needs network access "
                        f"to the Hugging Face hub or a local copy (pass path=<folder or file>)") from exc
    n = min(len(ds), max_rows)
    ds = ds.select(range(n))
    examples: list[tuple[str, str]] = []
    if text_column is None and "translation" in ds.column_names:
        for row in ds:
            for lang, text in row["translation"].items():
                examples.append((str(text)[:max_chars], lang))
    else:
        missing = [c for c in (text_column, label_column) if c not in ds.column_names]
        if missing:
            raise DataError(f"probing task {name!r}: dataset {path!r} has no column(s) {missing}; "
                            f"columns are {ds.column_names}")
        for row in ds:
            examples.append((str(row[text_column])[:max_chars], str(row[label_column])))
    return make_task(name, examples, n_train=n_train, n_test=n_test, seed=seed, classes=classes,
                     source=f"datasets:{path}")
