"""A tiny randomly initialised Llama and an offline tokenizer, for tests and examples.

``save_tiny_llama(folder)`` writes a ``save_pretrained`` folder (config, safetensors weights and a
byte-level BPE tokenizer trained in well under a second on ``pydoc_data.topics``) that
``load_causal_lm(folder)`` loads like any local model. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tiny_tokenizer(vocab_size: int = 384) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` with ``<bos>``=0, ``<eos>``=1, ``<pad>``=2."""
    from pydoc_data.topics import topics
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<bos>", "<eos>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = [topics[k] for k in sorted(topics)][:20]
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def tiny_llama(vocab_size: int, *, hidden: int = 32, layers: int = 3, seed: int = 0) -> Any:
    """A random ``LlamaForCausalLM`` (float32, eval mode) with ``layers`` layers of width ``hidden``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, bos_token_id=0, eos_token_id=1, pad_token_id=2,
                      tie_word_embeddings=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model.eval()


def save_tiny_llama(folder: str | Path, *, hidden: int = 32, layers: int = 3, seed: int = 0) -> Path:
    """Write a tiny random Llama + tokenizer to ``folder`` (``save_pretrained`` layout)."""
    folder = Path(folder)
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok), hidden=hidden, layers=layers, seed=seed)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder
