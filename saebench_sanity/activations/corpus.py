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
  read with ``datasets.load_dataset(..., streaming=True)`` (needs network or the local datasets
  cache); any ``load_dataset`` builder works, e.g. ``hf:json`` with ``data_files=``.

Streaming: folder and hub corpora are never held in memory. ``Corpus.iter_documents`` is a
generator that reads one ``.txt`` file or one ``.jsonl`` line (one dataset row) at a time, and
``tokenize_corpus`` tokenizes ``_ENCODE_CHUNK`` documents (at most ``_ENCODE_CHARS`` characters)
per call and stops reading as soon as
it has the tokens asked for, so a build's memory follows the tokens it harvests (4 B per token
of the token array), never the corpus's size. Their identity (``CorpusRead``) is therefore the
documents *read*: sha256, count and characters of the documents whose tokens entered the set
(the token contexts themselves are hashed too). The embedded corpus is small and kept whole; its
identity hashes every document, as it always did, so the registered sets keep their identity.

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
import json
import sys
import tokenize
from array import array
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saebench_sanity.errors import ConfigError, DataError

DEFAULT_CORPUS = "default"
_STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo",
                "tkinter", "ensurepip", "venv", "__pycache__"}
#: documents per tokenizer call in ``tokenize_corpus``, and characters: a call stops taking
#: documents at either bound (the tokenizer's per-token objects of one call are what a build's
#: memory peaks on; a single longer document is still one call)
_ENCODE_CHUNK = 256
_ENCODE_CHARS = 262_144
_SPECIAL_TOKEN_ATTRS = ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id")


def _doc_hash_update(h: Any, doc: str) -> None:
    """Add one document to a corpus sha256 (length-prefixed, so boundaries count)."""
    b = doc.encode("utf-8")
    h.update(len(b).to_bytes(8, "little"))
    h.update(b)


class Corpus:
    """Documents in a fixed order with a stable identity, held in memory or streamed.

    Args:
        id: human-readable source id (``"python-3.11-docs"``, ``"folder:<name>"``, ``"hf:..."``).
        documents: the texts (an in-memory corpus: the embedded one, tests), or
        stream: a callable returning a fresh iterator over the texts (folder and hub corpora:
            never materialized by the harvest; see module doc).
    """

    def __init__(self, id: str, documents: tuple[str, ...] | list[str] | None = None, *,
                 stream: Callable[[], Iterator[str]] | None = None) -> None:
        if (documents is None) == (stream is None):
            raise ValueError("Corpus takes documents or stream, not both")
        self.id = id
        self._documents = tuple(documents) if documents is not None else None
        self._stream = stream

    @property
    def streamed(self) -> bool:
        """True for a streamed corpus (its identity covers the documents read)."""
        return self._stream is not None

    def iter_documents(self) -> Generator[str, None, None]:
        """A generator over the documents, in order (one file / line / row read at a time)."""
        yield from (self._documents if self._documents is not None else self._stream())  # type: ignore[misc]

    @property
    def documents(self) -> tuple[str, ...]:
        """Every document as a tuple: materializes a streamed corpus (small corpora, tests only;
        the harvest reads ``iter_documents``)."""
        return self._documents if self._documents is not None else tuple(self.iter_documents())

    @property
    def sha256(self) -> str:
        """sha256 over every document (each length-prefixed, so boundaries count)."""
        h = hashlib.sha256()
        for doc in self.iter_documents():
            _doc_hash_update(h, doc)
        return h.hexdigest()

    @property
    def n_chars(self) -> int:
        return sum(len(d) for d in self.iter_documents())

    def __repr__(self) -> str:
        return f"Corpus({self.id!r}, {'streamed' if self.streamed else f'{len(self._documents or ())} documents'})"


@dataclass(frozen=True)
class CorpusRead:
    """What ``tokenize_corpus`` read of a corpus: the documents whose tokens entered the stream.

    Attributes:
        sha256: sha256 over those documents (``Corpus.sha256``'s definition).
        n_documents: how many.
        n_chars: their characters.
    """

    sha256: str
    n_documents: int
    n_chars: int


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


def _folder_documents(root: Path, files: list[Path]) -> Iterator[str]:
    """Documents of ``files`` one at a time: a ``.txt`` file whole, a ``.jsonl`` file line by
    line (never read whole)."""
    for path in files:
        if path.suffix == ".txt":
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                yield text
            continue
        with path.open(encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line).get("text")
                except (ValueError, AttributeError) as exc:
                    raise DataError(f"corpus file {str(path)!r} line {lineno} is not a JSON object; "
                                    f"write one {{\"text\": ...}} object per line") from exc
                if isinstance(text, str) and text.strip():
                    yield text.strip()


def folder_corpus(folder: str | Path) -> Corpus:
    """Every ``*.txt`` (one document) and ``*.jsonl`` (``"text"`` per line) file under ``folder``,
    streamed (see module doc). DataError at once for a missing folder or one whose first
    document cannot be read (no text, a bad first line)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"corpus folder {str(folder)!r} does not exist; pass a folder of .txt/.jsonl files")
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix in (".txt", ".jsonl")),
                   key=lambda p: p.relative_to(root).as_posix())
    corpus = Corpus(f"folder:{root.name}", stream=lambda: _folder_documents(root, files))
    if next(corpus.iter_documents(), None) is None:  # reads up to the first document only
        raise DataError(f"corpus folder {str(folder)!r} has no text (.txt files or .jsonl lines with a \"text\" field); add some")
    return corpus


def hub_corpus(name: str, *, split: str = "train", text_column: str = "text", max_documents: int | None = None,
               **load_kwargs: Any) -> Corpus:
    """Documents from ``datasets.load_dataset(name, split=split, streaming=True, **load_kwargs)``'s
    ``text_column``, streamed row by row (nothing of the dataset is downloaded or held beyond
    what the harvest reads). DataError at once when the dataset cannot be opened or its first
    row has no ``text_column``."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets ships with sae-lens
        raise DataError("hub corpora need the `datasets` package; pip install datasets") from exc

    def fail(exc: BaseException) -> DataError:
        return DataError(f"cannot load dataset {name!r} split {split!r} ({type(exc).__name__}); check the name and "
                         f"your network, or use a local folder of .txt/.jsonl files")

    def rows() -> Iterator[dict[str, Any]]:
        try:
            ds = datasets.load_dataset(name, split=split, streaming=True, **load_kwargs)
            it = iter(ds if max_documents is None else ds.take(max_documents))
        except Exception as exc:  # noqa: BLE001 - network/cache/builder failures all mean the same to the user
            raise fail(exc) from exc
        while True:
            try:
                row = next(it)
            except StopIteration:
                return
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001 - a read error mid-stream: same message
                raise fail(exc) from exc
            yield row

    def documents() -> Iterator[str]:
        for row in rows():
            if text_column not in row:
                raise DataError(f"dataset {name!r} has no column {text_column!r} (columns: {', '.join(row)}); "
                                f"pass text_column=")
            text = row[text_column]
            if isinstance(text, str) and text.strip():
                yield text.strip()

    files = load_kwargs.get("data_files")
    tag = f"hf:{name}:{split}" + (f":{Path(str(files)).name}" if isinstance(files, (str, Path)) else "")
    corpus = Corpus(tag, stream=documents)
    if next(corpus.iter_documents(), None) is None:  # opens the stream, reads up to the first text
        raise DataError(f"dataset {name!r} split {split!r} has no text in column {text_column!r}; pick another column")
    return corpus


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


class _Spill:
    """A token sink writing int32 ids to a file in blocks of ``block`` tokens (``tokenize_corpus``
    with ``spill``): memory holds one block, whatever the number of tokens."""

    def __init__(self, path: Path, block: int = 1 << 20) -> None:
        self.fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.buf = array("i")
        self.block = block
        self.n = 0

    def append(self, token: int) -> None:
        self.buf.append(token)
        self.n += 1

    def extend(self, ids: list[int]) -> None:
        self.buf.extend(ids)
        self.n += len(ids)
        if len(self.buf) >= self.block:
            self.flush()

    def flush(self) -> None:
        try:
            self.fh.write(self.buf.tobytes())  # native int32: read back on this machine only
        except OSError as exc:
            raise DataError(f"writing the token stream to {str(self.fh.name)!r} failed ({exc.strerror or exc}); free "
                            "disk space beside the activation store and build again") from exc
        self.buf = array("i")

    def close(self) -> None:
        self.flush()
        self.fh.close()

    def __len__(self) -> int:
        return self.n


class TokenContexts:
    """Token contexts ``[n_ctx, context_len]`` over an int32 token-stream file written by
    ``tokenize_corpus(spill=...)``: context ``i`` is BOS followed by tokens ``i * body`` ..
    ``(i + 1) * body - 1`` of the stream (``body = context_len - 1``; without BOS, ``body =
    context_len`` tokens). Contexts are read from the file when asked for, so a build holds the
    contexts of one shard, never the set's token ids."""

    def __init__(self, path: str | Path, n_ctx: int, context_len: int, bos: int, prepend_bos: bool) -> None:
        self.path = Path(path)
        self.n_ctx, self.context_len, self.bos, self.prepend_bos = n_ctx, context_len, bos, prepend_bos
        self.body = context_len - 1 if prepend_bos else context_len

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_ctx, self.context_len)

    def _finish(self, body: Any) -> Any:
        """``[n, body]`` int32 -> ``[n, context_len]`` int64 (BOS prepended when the recipe says so)."""
        import torch

        body = body.to(torch.int64)
        if self.prepend_bos:
            body = torch.cat([torch.full((body.shape[0], 1), self.bos, dtype=torch.int64), body], dim=1)
        return body

    def __getitem__(self, idx: Any) -> Any:
        """Contexts ``idx`` (a sequence or 1-d tensor of indices) as int64 ``[len(idx), context_len]``."""
        import torch

        rows = [int(i) for i in (idx.tolist() if hasattr(idx, "tolist") else idx)]
        if any(not 0 <= i < self.n_ctx for i in rows):
            raise IndexError(f"context index out of range 0..{self.n_ctx - 1}")
        out = array("i")
        size = self.body * 4
        with open(self.path, "rb") as fh:
            for i in rows:
                fh.seek(i * size)
                out.frombytes(fh.read(size))
        return self._finish(torch.frombuffer(out, dtype=torch.int32).view(len(rows), self.body).clone()
                            if rows else torch.empty(0, self.body, dtype=torch.int32))

    def chunks(self, rows: int = 4096) -> Iterator[Any]:
        """Every context in order, ``rows`` at a time (int64 ``[<=rows, context_len]``)."""
        import torch

        with open(self.path, "rb") as fh:
            for start in range(0, self.n_ctx, rows):
                n = min(rows, self.n_ctx - start)
                data = array("i")
                data.frombytes(fh.read(n * self.body * 4))
                yield self._finish(torch.frombuffer(data, dtype=torch.int32).view(n, self.body).clone())


def _bos_of(tokenizer: Any) -> int:
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise DataError("the tokenizer has neither a BOS nor an EOS token; cannot separate documents")
    return int(bos)


def tokenize_corpus(corpus: Corpus, tokenizer: Any, context_len: int, *, prepend_bos: bool = True,
                    max_contexts: int | None = None, spill: str | Path | None = None) -> tuple[Any, CorpusRead]:
    """Token contexts ``[n_ctx, context_len]`` from a corpus (see module doc for BOS), and what
    was read of it (``CorpusRead``): an int32 tensor, or with ``spill`` (a file path) a
    ``TokenContexts`` over that file (the token stream written there block by block).

    Documents are pulled from ``corpus.iter_documents()`` ``_ENCODE_CHUNK`` (or ``_ENCODE_CHARS``
    characters) at a time and the
    reading stops once ``max_contexts`` contexts' tokens are in: memory follows the tokens asked
    for (an int32 array, 4 B/token) without ``spill``, one block of tokens with it; never the
    corpus. Raises DataError if the corpus is too short for one context.
    """
    import torch

    if context_len < 2:
        raise ConfigError(f"context_len = {context_len} must be >= 2")
    bos = _bos_of(tokenizer)
    body = context_len - 1 if prepend_bos else context_len
    # token ids as a compact int32 array (4 B/token; a list of Python ints costs ~36), or a file
    stream: Any = array("i") if spill is None else _Spill(Path(spill))
    need = None if max_contexts is None else max_contexts * body
    h, n_docs, n_chars = hashlib.sha256(), 0, 0
    docs = corpus.iter_documents()
    done = False
    try:
        while not done:
            chunk, chars = [], 0
            for doc in docs:  # up to _ENCODE_CHUNK documents or _ENCODE_CHARS characters
                chunk.append(doc)
                chars += len(doc)
                if len(chunk) >= _ENCODE_CHUNK or chars >= _ENCODE_CHARS:
                    break
            if not chunk:
                break
            for doc, ids in zip(chunk, tokenizer(chunk, add_special_tokens=False)["input_ids"]):
                if len(stream):
                    stream.append(bos)
                stream.extend(ids)
                _doc_hash_update(h, doc)
                n_docs += 1
                n_chars += len(doc)
                if need is not None and len(stream) >= need:
                    done = True
                    break
    finally:
        docs.close()  # stop a streamed source (closes its file / dataset iterator)
        if spill is not None:
            stream.close()
    n_ctx = len(stream) // body
    if max_contexts is not None:
        n_ctx = min(n_ctx, max_contexts)
    if n_ctx == 0:
        raise DataError(f"corpus {corpus.id!r} has {len(stream)} tokens, fewer than one context of {context_len}; "
                        f"use more text or a shorter context_len")
    read = CorpusRead(sha256=h.hexdigest(), n_documents=n_docs, n_chars=n_chars)
    if spill is not None:
        return TokenContexts(spill, n_ctx, context_len, bos, prepend_bos), read
    chunks = torch.frombuffer(stream, dtype=torch.int32)[: n_ctx * body].view(n_ctx, body)
    if prepend_bos:
        chunks = torch.cat([torch.full((n_ctx, 1), bos, dtype=torch.int32), chunks], dim=1)
    else:
        chunks = chunks.clone()  # own the memory (the array is released on return)
    return chunks, read


def tokenize_contexts(corpus: Corpus, tokenizer: Any, context_len: int, *, prepend_bos: bool = True,
                      max_contexts: int | None = None) -> Any:
    """Token contexts ``[n_ctx, context_len]`` (int64) from a corpus (``tokenize_corpus``).

    Raises DataError if the corpus is too short for one context.
    """
    import torch

    return tokenize_corpus(corpus, tokenizer, context_len, prepend_bos=prepend_bos,
                           max_contexts=max_contexts)[0].to(torch.int64)


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
