"""The replica's tokenizer endpoints, as vLLM serves them (so evaluation harnesses need no tokenizer download):
POST /tokenize, POST /detokenize, GET /tokenizer_info. Plain functions over the model's tokenizer; a bad field
raises ValueError naming it."""
from __future__ import annotations

from typing import Any

from appliance.runtime.server_app import encode_messages

_PATH_FIELDS = ("vocab_file", "merges_file", "tokenizer_file", "name_or_path")


def _flag(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a boolean, got {value!r}")
    return value


def tokenize(tokenizer: Any, data: dict[str, Any], max_model_len: int) -> dict[str, Any]:
    """{"prompt"} (special tokens added unless add_special_tokens is false) or {"messages"} (the chat template,
    generation prompt added unless add_generation_prompt is false) -> {"count", "max_model_len", "tokens",
    "token_strs"}."""
    strs = _flag(data, "return_token_strs", False)
    if "messages" in data and data.get("prompt") is None:
        if not _flag(data, "add_generation_prompt", True):
            raise ValueError("add_generation_prompt false is not supported: the chat is always rendered for a reply")
        ids = list(encode_messages(tokenizer, data["messages"]))
        if _flag(data, "add_special_tokens", False) and tokenizer.bos_token_id is not None:
            ids = [tokenizer.bos_token_id] + ids
    else:
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            raise ValueError("prompt must be a string (or send messages)")
        ids = list(tokenizer(prompt, add_special_tokens=_flag(data, "add_special_tokens", True)).input_ids)
    return {"count": len(ids), "max_model_len": max_model_len, "tokens": ids,
            "token_strs": tokenizer.convert_ids_to_tokens(ids) if strs else None}


def detokenize(tokenizer: Any, data: dict[str, Any]) -> dict[str, Any]:
    """{"tokens": [ids]} -> {"prompt": text} (special tokens kept, as vLLM does)."""
    tokens = data.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise ValueError("tokens must be a list of integers")
    vocab = len(tokenizer)
    bad = [t for t in tokens if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"tokens contains unknown token id {bad[0]} (vocabulary of {vocab})")
    return {"prompt": tokenizer.decode(tokens)}


def _serializable(value: Any) -> Any:
    if hasattr(value, "content"):  # AddedToken
        return value.content
    if isinstance(value, dict):
        return {str(k): _serializable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_serializable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def tokenizer_info(tokenizer: Any) -> dict[str, Any]:
    """The tokenizer's configuration (its init kwargs without file paths), its class, its special tokens and chat
    template: vLLM's TokenizerInfoResponse."""
    info = {k: v for k, v in (getattr(tokenizer, "init_kwargs", None) or {}).items() if k not in _PATH_FIELDS}
    info = _serializable(info)
    for name in ("eos_token", "bos_token", "pad_token", "unk_token"):
        info[name] = getattr(tokenizer, name, None)
    info["tokenizer_class"] = type(tokenizer).__name__
    info["model_max_length"] = _serializable(getattr(tokenizer, "model_max_length", None))
    if getattr(tokenizer, "chat_template", None):
        info["chat_template"] = tokenizer.chat_template
    return info
