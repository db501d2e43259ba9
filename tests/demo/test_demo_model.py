"""The shipped demo model: a standard HF checkpoint that loads, chats, and answers in the bundled corpus's English."""
from __future__ import annotations

import pytest
import torch

from appliance.demo import MODEL_DIR, ensure_demo_model, is_complete
from appliance.demo.fluency import fluency
from appliance.runtime.tiny_models import CHAT_TEMPLATE

MIN_WORD_HIT_RATE = 0.7
MIN_BIGRAM_HIT_RATE = 0.5


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    return AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32).eval()


def _greedy(model, tokenizer, prompt_ids: list[int], max_new_tokens: int = 48) -> list[int]:
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def test_shipped_directory_is_a_complete_small_llama_checkpoint():
    import json

    assert is_complete(MODEL_DIR)
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_key_value_heads"] < config["num_attention_heads"]
    total = sum(f.stat().st_size for f in MODEL_DIR.iterdir())
    assert total < 9 * 2**20, f"shipped model is {total / 2**20:.1f} MiB"


def test_ensure_demo_model_returns_the_shipped_directory_without_retraining(tmp_path):
    before = (MODEL_DIR / "model.safetensors").stat().st_mtime_ns
    assert ensure_demo_model() == MODEL_DIR
    assert (MODEL_DIR / "model.safetensors").stat().st_mtime_ns == before
    assert not is_complete(tmp_path)


def test_tokenizer_round_trips_text_and_adds_bos(tokenizer):
    for text in ["Once upon a time there was a king.", "We the People of the United States",
                 "Héllo wörld, naïve café, 東京 🙂 ∑", "def f(x):\n    return x  # tabs\tand  spaces\n"]:
        ids = tokenizer.encode(text)
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<unk>", "<s>", "</s>", "<pad>"]


def test_chat_template_matches_the_engine_contract(tokenizer):
    assert tokenizer.chat_template == CHAT_TEMPLATE
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hello!"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "<|user|>\nHello!</s>\n<|assistant|>\n"


def _chat_reply(model, tokenizer, question: str) -> tuple[list[int], str]:
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                           add_generation_prompt=True, tokenize=True)
    prompt_ids = prompt["input_ids"] if isinstance(prompt, dict) or hasattr(prompt, "keys") else prompt
    new = _greedy(model, tokenizer, list(prompt_ids), max_new_tokens=96)
    end = new.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in new else len(new)
    return new, tokenizer.decode(new[:end], skip_special_tokens=True)


def test_chat_reply_is_fluent_english_and_ends_with_eos(model, tokenizer):
    new, reply = _chat_reply(model, tokenizer, "Tell me a story.")
    assert tokenizer.eos_token_id in new, tokenizer.decode(new)
    assert _passes_fluency_check(reply), (fluency(reply), reply)


def _passes_fluency_check(text: str) -> bool:
    score = fluency(text)
    return (score.words >= 15 and score.distinct_words >= 10 and score.word_hit_rate >= MIN_WORD_HIT_RATE
            and score.bigram_hit_rate >= MIN_BIGRAM_HIT_RATE)


@pytest.mark.parametrize("seed", [0, 2])
@pytest.mark.parametrize("init_std", [None, 0.08])
def test_the_fluency_check_fails_for_a_random_weight_model(model, tokenizer, seed, init_std):
    """Same architecture and tokenizer, random weights: the check must reject its reply (a word-only check might
    not: greedy decoding of a random model can repeat one real word)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    random_model = AutoModelForCausalLM.from_config(model.config, dtype=torch.float32).eval()
    if init_std is not None:
        with torch.no_grad():
            for p in random_model.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, init_std)
    _, reply = _chat_reply(random_model, tokenizer, "Tell me a story.")
    assert not _passes_fluency_check(reply), reply
