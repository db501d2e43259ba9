"""Small Hugging Face-format checkpoints with random weights, for tests and benchmarks.

No model can be downloaded here, so tests build real architectures (Llama, Mistral, Qwen2) with random weights,
save them exactly as the Hub would (config.json, safetensors, tokenizer files), and compare the engine against
`transformers` on the same files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# transformers 5 saves tokenizers as "TokenizersBackend", a class transformers 4.57 (the AMI's, for NxD Inference)
# does not have; both load a tokenizer.json-backed "PreTrainedTokenizerFast" to the same tokenizer.
PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# A Hermes-style template that renders tools (as Qwen2.5's does): tool definitions in the system turn, calls as
# <tool_call>{"name": ..., "arguments": ...}</tool_call>, tool results as <tool_response> in a user turn.
TOOLS_CHAT_TEMPLATE = (
    "{%- if tools %}<|system|>\n{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n{% endif %}"
    "# Tools\n\nYou may call one or more functions. Their signatures are within <tools></tools>:\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n\nFor each call, return a JSON object "
    "with the function name and arguments within <tool_call></tool_call> tags:\n<tool_call>\n"
    "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call></s>\n{% endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' and tools and loop.first %}"
    "{%- elif message['role'] == 'assistant' and message.get('tool_calls') %}<|assistant|>\n"
    "{{ message['content'] or '' }}{% for call in message['tool_calls'] %}<tool_call>\n{\"name\": "
    "{{ call['function']['name'] | tojson }}, \"arguments\": {{ call['function']['arguments'] | tojson }}}\n"
    "</tool_call>{% endfor %}</s>\n"
    "{%- elif message['role'] == 'tool' %}<|user|>\n<tool_response>\n{{ message['content'] }}\n</tool_response></s>\n"
    "{%- else %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times, it was the age of wisdom.",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little money in my purse.",
    "In a hole in the ground there lived a hobbit. Héllo wörld, naïve café, 東京, emoji 🙂 and symbols ∑∫.",
    "def main():\n    print('hello world')\n    return 0\n",
    "0123456789 + - * / = ( ) [ ] { } < > , . ; : ! ? ' \" # $ % & @ ^ _ ` | ~",
]


def build_tokenizer(vocab_size: int = 512, corpus: list[str] | None = None, chat_template: str = CHAT_TEMPLATE):
    """A byte-level BPE tokenizer trained on a small corpus; every byte sequence is encodable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus or _CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.chat_template = chat_template
    return fast


def save_tokenizer(tokenizer: Any, path: str | Path) -> None:
    """save_pretrained, with a tokenizer class that transformers 4.57 and 5.x both load."""
    tokenizer.save_pretrained(path)
    config_file = Path(path) / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    if config.get("tokenizer_class") != PORTABLE_TOKENIZER_CLASS:
        config["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


ARCHITECTURES: dict[str, dict[str, Any]] = {
    "llama": {},
    "llama3": {  # GQA, llama3 rope scaling, explicit head_dim different from hidden/heads, untied embeddings
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 24,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    },
    "mistral": {},
    "qwen2": {},
}


SMALL_SHAPE: dict[str, Any] = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)


def make_config(arch: str = "llama", **overrides: Any):
    """A small config of a real architecture; `arch` is llama, llama3, mistral or qwen2."""
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    base: dict[str, Any] = dict(
        **SMALL_SHAPE,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
    )
    base.update(ARCHITECTURES[arch])
    base.update(overrides)
    cls = {"llama": LlamaConfig, "llama3": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[arch]
    if arch == "mistral":
        base.setdefault("sliding_window", None)
    return cls(**base)


def make_checkpoint(
    path: str | Path,
    arch: str = "llama",
    dtype: str = "float32",
    seed: int = 0,
    max_shard_size: str | None = None,
    tokenizer_vocab: int | None = None,
    init_std: float = 0.25,
    chat_template: str = CHAT_TEMPLATE,
    **config_overrides: Any,
) -> Path:
    """Write a random-weight checkpoint of `arch` with a tokenizer to `path` and return it (`chat_template`:
    TOOLS_CHAT_TEMPLATE for one that renders tools)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = make_config(arch, **config_overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    with torch.no_grad():  # larger-than-default init so random models produce varied, non-repeating tokens
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, init_std)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, safe_serialization=True, **kwargs)
    vocab = min(tokenizer_vocab or config.vocab_size, config.vocab_size)
    save_tokenizer(build_tokenizer(vocab, chat_template=chat_template), path)
    return path
