"""``local`` judge: a transformers causal LM answering chat prompts greedily, offline.

The default is the embedded SmolLM2-135M-Instruct (``models.default_model``): weak, but real and
offline. ``model`` may also name any folder or hub id ``models.loading.load_causal_lm`` accepts.

:func:`tiny_random_lm` builds a tiny random Llama with a byte-level BPE tokenizer trained in
process on CPython's help text: no download, a second to build, used by the tests (and by the
loopback server's tests) wherever a *real* transformers model is needed but its quality is not.
"""

from __future__ import annotations

import threading
from typing import Any

from saebench_sanity.judges.base import Judge, JudgeError

_LOCK = threading.Lock()

_TINY_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                  "{% if add_generation_prompt %}assistant:{% endif %}")


def tiny_random_lm(seed: int = 0, d_model: int = 32, n_layers: int = 2, vocab_size: int = 320) -> tuple[Any, Any]:
    """``(model, tokenizer)``: a random-weight ``LlamaForCausalLM`` (float32, eval) and a
    ``PreTrainedTokenizerFast`` with ``<pad>``/``<s>``/``</s>`` and a chat template."""
    import torch
    from pydoc_data.topics import topics
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([topics[k] for k in sorted(topics)][:20], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    tok.chat_template = _TINY_TEMPLATE
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=d_model, intermediate_size=2 * d_model,
                      num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    return model, tok


def _load(model: str) -> tuple[Any, Any, dict]:
    """One copy per process, shared with the real activation sets (``load_model_cached``), so
    the default judge and the default set's model are the same object in memory (on another
    device: the one copy there that metrics use too, ``devices.model_on``)."""
    from saebench_sanity.activations.real import load_model_cached

    with _LOCK:
        return load_model_cached(model)


def chat_generate(model: Any, tokenizer: Any, messages: list[dict[str, str]], max_tokens: int) -> str:
    """Greedy completion of one chat prompt with the tokenizer's chat template (or plain role
    lines if it has none); returns the new text only."""
    return chat_generate_many(model, tokenizer, [messages], max_tokens)[0]


def chat_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat prompt ending where the assistant's answer starts."""
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(out["input_ids"])
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    return list(tokenizer(text)["input_ids"])


def left_padded(seqs: list[list[int]], pad: int) -> tuple[Any, Any, Any]:
    """``(input_ids, attention_mask, position_ids)`` ``[n, max_len]`` with sequences aligned at
    the right end; positions count real tokens only, so padding changes no logit."""
    import torch

    n, width = len(seqs), max(len(s) for s in seqs)
    ids = torch.full((n, width), int(pad), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    return ids, mask, pos


def answer_token_ids(tokenizer: Any, words: tuple[str, ...]) -> list[int]:
    """First token ids of ``words`` as an answer would start them (bare and after a space)."""
    ids = set()
    for w in words:
        for variant in (w, " " + w):
            toks = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if toks:
                ids.add(int(toks[0]))
    return sorted(ids)


def yes_no_logodds(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], batch_size: int = 16) -> list[float]:
    """``logsumexp(Yes-like) - logsumexp(No-like)`` first-token log-probabilities per chat prompt.

    One forward pass per batch of left-padded prompts, unembedding only the last position: a
    yes/no answer costs no generation steps and is never unparseable."""
    import torch

    yes_all, no_all = answer_token_ids(tokenizer, ("Yes", "yes")), answer_token_ids(tokenizer, ("No", "no"))
    yes = [t for t in yes_all if t not in no_all]  # a shared first token (e.g. a bare space) says neither
    no = [t for t in no_all if t not in yes_all]
    if not yes or not no:
        raise JudgeError("local judge: the tokenizer gives Yes and No the same first tokens; cannot read yes/no answers")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    limit = getattr(model.config, "max_position_embeddings", 2048)
    seqs = [chat_ids(tokenizer, m)[-limit:] for m in prompts]
    out: list[float] = []
    dev = model.device
    with torch.inference_mode():
        for start in range(0, len(seqs), batch_size):
            ids, mask, pos = (t.to(dev) for t in left_padded(seqs[start:start + batch_size], pad))
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                           logits_to_keep=1).logits[:, -1].float()
            logp = torch.log_softmax(logits, -1)
            out += (torch.logsumexp(logp[:, yes], -1) - torch.logsumexp(logp[:, no], -1)).tolist()
    return out


def chat_generate_many(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], max_tokens: int,
                       batch_size: int = 32) -> list[str]:
    """Greedy completions of several chat prompts, batched with left padding (a decode step of
    SmolLM2-135M on a CPU costs about the same for 4 or 20 sequences, so AutoInterp asks for a
    whole cohort's explanations at once: ``benchmarks/test_bench_autointerp.py``)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    limit = getattr(model.config, "max_position_embeddings", 2048) - max_tokens
    seqs = [chat_ids(tokenizer, m)[-limit:] for m in prompts]
    out: list[str] = []
    dev = model.device
    with torch.inference_mode():
        for start in range(0, len(seqs), batch_size):
            ids, mask, _ = (t.to(dev) for t in left_padded(seqs[start:start + batch_size], pad))
            gen = model.generate(ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False, pad_token_id=pad)
            out += [tokenizer.decode(row[ids.shape[1]:].tolist(), skip_special_tokens=True).strip() for row in gen]
    return out


class LocalJudge(Judge):
    """A transformers causal LM as judge (greedy, temperature 0). One model per process and name.

    Answers text prompts by greedy generation (batched in :meth:`complete_many`) and yes/no
    questions from its next-token distribution (:meth:`yes_logodds`). ``device``: where the model
    runs (``"cpu"`` default; the ``autointerp`` metric sets the scoring device through
    :meth:`use_device`); the model is moved there once per process."""

    plugin = "local"
    scores_yes_no = True

    def __init__(self, model: str = "default", loaded: tuple[Any, Any] | None = None, device: str = "cpu") -> None:
        self._loaded = loaded
        self.device = str(device)
        if loaded is not None and model == "default":
            model = f"in-process:{type(loaded[0]).__name__}"
        self.model = model if model != "default" else "smollm2-135m-instruct"
        self._name = model
        self._lock = threading.Lock()

    def use_device(self, device: str) -> None:
        """Run the model on ``device`` from now on (a resolved device string, e.g. ``"cuda:0"``)."""
        self.device = str(device)

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            m, t, _ = _load(self._name)
            self._loaded = (m, t)
        from saebench_sanity.devices import model_on

        m, t = self._loaded
        return model_on(m, self.device), t

    def _run(self, what: str, fn: Any, prompts: Any, *args: Any) -> Any:
        """``fn(model, tokenizer, prompts, *args)`` under the lock (generation is not re-entrant
        on a shared model); any failure becomes one JudgeError line naming the judge. The time
        budget (``Judge.budget``) is checked before each call: a running batch is not interrupted."""
        self.check_budget(f"before it could {what}")
        model, tok = self._model()
        try:
            with self._lock:
                return fn(model, tok, [list(m) for m in prompts], *args)
        except JudgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line naming the judge
            raise JudgeError(f"local judge {self.model!r} failed to {what} ({type(exc).__name__}: {exc}); "
                             f"check the model folder") from exc

    def _complete(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        return self._run("generate", chat_generate_many, [messages], max_tokens)[0]

    def complete_many(self, prompts: Any, max_tokens: int = 64) -> list[str]:
        return self._run("generate", chat_generate_many, prompts, max_tokens)

    def yes_logodds(self, prompts: Any) -> list[float]:
        return self._run("score yes/no", yes_no_logodds, prompts)


def build(model: str = "default", device: str = "cpu") -> LocalJudge:
    """Factory of the registered ``local`` judge (``device``: where its model runs; the
    ``autointerp`` metric moves it to the scoring device)."""
    return LocalJudge(model=model, device=device)
