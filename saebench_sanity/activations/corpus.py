"""Text corpora and their tokenization into fixed-length contexts.

Sources (``load_corpus``):

* ``"default"`` (or None): the embedded corpus every CPython install ships - the documentation
  topics in ``pydoc_data.topics`` (sorted by topic name) followed by the module docstrings of the
  standard library (``.py`` files under ``sysconfig``'s stdlib folder in sorted path order, tests,
  IDLE, tkinter, lib2to3 and site-packages left out). Module docstrings are read with ``tokenize``
  (first string literal of the file), never by importing the module. Its id names the Python
  version because the text changes with it; its sha256 is part of every manifest.
* a folder path: every ``*.txt`` file is one document, every line of a ``*.jsonl`` file with a
  ``"text"`` field is one document (files in sorted path order, recursively).
* ``hf:<dataset>`` (``load_corpus("hf:roneneldan/TinyStories", split="train")``): a dataset
  loaded with ``datasets.load_dataset`` (needs network or the local datasets cache); any
  ``load_dataset`` builder works, e.g. ``hf:json`` with ``data_files=``.

Tokenization and BOS handling (``tokenize_contexts``), following SAELens's activation store:
documents are tokenized without special tokens, concatenated with a separator token between
documents (BOS, SAELens's default ``sequence_separator_token="bos"``; EOS if the tokenizer has no
BOS), cut into chunks of ``context_len - 1`` tokens and each chunk gets BOS prepended
(SAELens's ``prepend_bos=True``), so every context starts like the model saw text in training
and the attention-sink position is always position 0. The final partial chunk is dropped, so
contexts never need padding. When activations are harvested, positions holding a special token
(BOS, EOS, PAD, SEP, decoder-start: the ids ``sae_lens.util.get_special_token_ids`` returns) are
dropped, as SAELens's ``exclude_special_tokens=True`` does: their activations (the BOS sink has
a norm tens of times larger than other tokens) are not data an SAE should be trained or scored on.
"""

from __future__ import annotations

import hashlib
import io
from array import array
import json
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saebench_sanity.errors import ConfigError, DataError

DEFAULT_CORPUS = "default"
_STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo",
                "tkinter", "ensurepip", "venv", "__pycache__"}
#: documents per tokenizer call in ``tokenize_contexts``
_ENCODE_CHUNK = 256
_SPECIAL_TOKEN_ATTRS = ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id")


@dataclass(frozen=True)
class Corpus:
    """A list of documents with a stable identity.

    Attributes:
        id: human-readable source id (``"python-3.11-docs"``, ``"folder:<name>"``, ``"hf:..."``).
        documents: the texts, in their fixed order.
    """

    id: str
    documents: tuple[str, ...]

    @property
    def sha256(self) -> str:
        """sha256 over the documents (each length-prefixed, so boundaries count)."""
        h = hashlib.sha256()
        for doc in self.documents:
            b = doc.encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        return h.hexdigest()

    @property
    def n_chars(self) -> int:
        return sum(len(d) for d in self.documents)


def _module_docstring(path: Path) -> str | None:
    """First string literal of a Python file (its module docstring), without importing it."""
    import ast
    import inspect

    try:
        src = path.read_bytes()
        for tok in tokenize.tokenize(io.BytesIO(src).readline):
            if tok.type in (tokenize.ENCODING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
                continue
            if tok.type == tokenize.STRING:
                value = ast.literal_eval(tok.string)
                return inspect.cleandoc(value) if isinstance(value, str) else None
            return None
    except (SyntaxError, ValueError, tokenize.TokenError, OSError, UnicodeDecodeError):
        return None
    return None


def default_corpus() -> Corpus:
    """The embedded corpus: ``pydoc_data.topics`` then stdlib module docstrings (see module doc)."""
    import sysconfig

    from pydoc_data.topics import topics

    docs = [topics[k].strip() for k in sorted(topics)]
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        if _STDLIB_SKIP.intersection(path.relative_to(root).parts):
            continue
        doc = _module_docstring(path)
        if doc and len(doc) >= 40:
            docs.append(doc)
    v = sys.version_info
    return Corpus(id=f"python-{v.major}.{v.minor}.{v.micro}-docs", documents=tuple(d for d in docs if d))


def folder_corpus(folder: str | Path) -> Corpus:
    """Every ``*.txt`` (one document) and ``*.jsonl`` (``"text"`` per line) file under ``folder``."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"corpus folder {str(folder)!r} does not exist; pass a folder of .txt/.jsonl files")
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix in (".txt", ".jsonl")),
                   key=lambda p: p.relative_to(root).as_posix())
    docs: list[str] = []
    for path in files:
        if path.suffix == ".txt":
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                docs.append(text)
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line).get("text")
            except (ValueError, AttributeError) as exc:
                raise DataError(f"corpus file {str(path)!r} line {lineno} is not a JSON object; "
                                f"write one {{\"text\": ...}} object per line") from exc
            if isinstance(text, str) and text.strip():
                docs.append(text.strip())
    if not docs:
        raise DataError(f"corpus folder {str(folder)!r} has no text (.txt files or .jsonl lines with a \"text\" field); add some")
    return Corpus(id=f"folder:{root.name}", documents=tuple(docs))


def hub_corpus(name: str, *, split: str = "train", text_column: str = "text", max_documents: int | None = None,
               **load_kwargs: Any) -> Corpus:
    """Documents from ``datasets.load_dataset(name, split=split, **load_kwargs)[text_column]``."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets ships with sae-lens
        raise DataError("hub corpora need the `datasets` package; pip install datasets") from exc
    try:
        ds = datasets.load_dataset(name, split=split, **load_kwargs)
    except Exception as exc:  # noqa: BLE001 - network/cache/builder failures all mean the same to the user
        raise DataError(f"cannot load dataset {name!r} split {split!r} ({type(exc).__name__}); check the name and "
                        f"your network, or use a local folder of .txt/.jsonl files") from exc
    if text_column not in ds.column_names:
        raise DataError(f"dataset {name!r} has no column {text_column!r} (columns: {', '.join(ds.column_names)}); "
                        f"pass text_column=")
    n = len(ds) if max_documents is None else min(max_documents, len(ds))
    docs = tuple(t.strip() for t in ds.select(range(n))[text_column] if isinstance(t, str) and t.strip())
    if not docs:
        raise DataError(f"dataset {name!r} split {split!r} has no text in column {text_column!r}; pick another column")
    files = load_kwargs.get("data_files")
    tag = f"hf:{name}:{split}" + (f":{Path(str(files)).name}" if isinstance(files, (str, Path)) else "")
    return Corpus(id=tag, documents=docs)


def load_corpus(source: str | None = None, **kwargs: Any) -> Corpus:
    """``None``/``"default"`` -> embedded corpus; ``"hf:<name>"`` -> hub dataset; else a folder."""
    if source is None or source == DEFAULT_CORPUS:
        return default_corpus()
    if not isinstance(source, str):
        raise ConfigError(f"corpus {source!r} must be 'default', a folder path or 'hf:<dataset>'")
    if source.startswith("hf:"):
        return hub_corpus(source[3:], **kwargs)
    return folder_corpus(source)


def special_token_ids(tokenizer: Any) -> list[int]:
    """BOS/EOS/PAD/SEP/decoder-start ids (as ``sae_lens.util.get_special_token_ids``; written out
    here so building a set does not import sae_lens)."""
    ids = {getattr(tokenizer, a, None) for a in _SPECIAL_TOKEN_ATTRS}
    return sorted(i for i in ids if isinstance(i, int))


def tokenize_contexts(corpus: Corpus, tokenizer: Any, context_len: int, *, prepend_bos: bool = True,
                      max_contexts: int | None = None) -> Any:
    """Token contexts ``[n_ctx, context_len]`` (int64) from a corpus (see module doc for BOS).

    Raises DataError if the corpus is too short for one context.
    """
    import torch

    if context_len < 2:
        raise ConfigError(f"context_len = {context_len} must be >= 2")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise DataError("the tokenizer has neither a BOS nor an EOS token; cannot separate documents")
    body = context_len - 1 if prepend_bos else context_len
    # token ids as a compact int32 array (4 B/token; a list of Python ints costs ~36), and the
    # documents encoded in chunks that stop once enough tokens are in: memory follows the tokens
    # asked for, not the corpus size
    stream = array("i")
    need = None if max_contexts is None else max_contexts * body
    docs = corpus.documents
    for start in range(0, len(docs), _ENCODE_CHUNK):
        for ids in tokenizer(list(docs[start:start + _ENCODE_CHUNK]), add_special_tokens=False)["input_ids"]:
            if stream:
                stream.append(bos)
            stream.extend(ids)
            if need is not None and len(stream) >= need:
                break
        if need is not None and len(stream) >= need:
            break
    n_ctx = len(stream) // body
    if max_contexts is not None:
        n_ctx = min(n_ctx, max_contexts)
    if n_ctx == 0:
        raise DataError(f"corpus {corpus.id!r} has {len(stream)} tokens, fewer than one context of {context_len}; "
                        f"use more text or a shorter context_len")
    chunks = torch.frombuffer(stream, dtype=torch.int32)[: n_ctx * body].to(torch.int64).view(n_ctx, body)
    if prepend_bos:
        chunks = torch.cat([torch.full((n_ctx, 1), bos, dtype=torch.int64), chunks], dim=1)
    return chunks


def keep_mask(input_ids: Any, tokenizer: Any) -> Any:
    """Bool ``[n_ctx, context_len]``: True where the token is not special (the positions harvested)."""
    import torch

    special = special_token_ids(tokenizer)
    if not special:
        return torch.ones_like(input_ids, dtype=torch.bool)
    return ~torch.isin(input_ids, torch.tensor(special, dtype=input_ids.dtype))


def split_contexts(n_ctx: int, n_eval: int, salt: str = "saebench-split") -> tuple[list[int], list[int]]:
    """A fixed, portable split of context indices: ``(train, eval)``.

    Contexts are ordered by ``sha256(salt:index)`` (no RNG, the same on every machine); the first
    ``n_eval`` are held out for evaluation, the rest (in that mixed order) are training data, so
    neighbouring contexts of one document land in different shards.
    """
    if not 0 < n_eval < n_ctx:
        raise DataError(f"corpus gives {n_ctx} contexts; need more than n_eval_contexts = {n_eval}; use more text or fewer eval contexts")
    order = sorted(range(n_ctx), key=lambda i: hashlib.sha256(f"{salt}:{i}".encode()).digest())
    return order[n_eval:], sorted(order[:n_eval])
