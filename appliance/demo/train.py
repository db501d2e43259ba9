"""Train the demo model from scratch on the bundled corpus, on the CPU.

    python -m appliance.demo.train [--minutes M | --steps N] [--out DIR] [--seed S]

Trains a byte-level BPE tokenizer and a small LlamaForCausalLM with plain PyTorch and saves a Hugging Face-format
checkpoint (config.json, model.safetensors, tokenizer files, generation_config.json, training_info.json).
With --steps the run is reproducible for a given seed and thread count; with --minutes the cosine schedule runs
on elapsed wall time instead, so the run fits the budget however busy the CPU is (the steps it took are recorded).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from appliance.demo.corpus_loader import load_chats, load_documents
from appliance.runtime.tiny_models import CHAT_TEMPLATE, save_tokenizer

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
SAMPLE_PROMPTS = ["Once upon a time", "The king said", "We the People"]


@dataclass(frozen=True)
class TrainConfig:
    vocab_size: int = 2048
    hidden_size: int = 192
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    context: int = 512
    batch_size: int = 4
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 60
    weight_decay: float = 0.1
    steps: int = 1022
    chat_repeats: int = 12
    seed: int = 0
    threads: int = 2
    sample_every: int = 100


def build_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts`; encode() prepends <s>, the chat template matches tiny_models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        model_max_length=TrainConfig.context,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_stream(tokenizer, cfg: TrainConfig) -> torch.Tensor:
    """All documents and chat exchanges as one token stream: <s> doc </s> ..., in a seeded order.

    Chat exchanges are repeated (they are a tiny share of the text) and rendered with the chat template;
    half of the copies start with <s>, as a chat prompt may or may not.
    """
    rng = random.Random(cfg.seed)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    backend = tokenizer.backend_tokenizer
    pieces: list[list[int]] = []
    for doc in load_documents():
        pieces.append([bos] + backend.encode(doc, add_special_tokens=False).ids + [eos])
    for chat in load_chats():
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        ids = backend.encode(text, add_special_tokens=False).ids
        for i in range(cfg.chat_repeats):
            pieces.append(([bos] if i % 2 == 0 else []) + ids)
    rng.shuffle(pieces)
    return torch.tensor([t for p in pieces for t in p], dtype=torch.long)


def build_model(cfg: TrainConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.context,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def lr_at(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warmup over the first steps, then cosine decay over `progress` (0..1) to min_lr_ratio * lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def unigram_entropy(stream: torch.Tensor) -> float:
    """Cross-entropy (nats/token) of the best context-free model of the stream: the bar a trained model must beat."""
    counts = torch.bincount(stream).float()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


@torch.no_grad()
def sample(model, tokenizer, prompt: str, max_new_tokens: int = 48, temperature: float = 0.0) -> str:
    model.eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    kwargs = {"do_sample": True, "temperature": temperature, "top_p": 0.9} if temperature > 0 else {"do_sample": False}
    out = model.generate(ids, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs)
    model.train()
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=False)


def _batch(stream: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(stream) - cfg.context - 1, (cfg.batch_size,), generator=gen)
    return torch.stack([stream[s:s + cfg.context] for s in starts.tolist()])


def train(cfg: TrainConfig, out: Path, minutes: float | None = None) -> dict:
    """Train the tokenizer and model per `cfg` and save the checkpoint to `out`; returns the training summary."""
    from transformers import GenerationConfig

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    t0 = time.time()
    docs = load_documents()
    chats = load_chats()
    tokenizer = build_tokenizer(docs + [CHAT_TEMPLATE] + [m["content"] for c in chats for m in c], cfg.vocab_size)
    stream = build_stream(tokenizer, cfg)
    h1 = unigram_entropy(stream)
    print(f"corpus: {len(docs)} documents, {len(chats)} chats, {len(stream)} tokens; unigram entropy {h1:.3f} nats")
    model = build_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    step = 0
    t_train = time.time()

    def progress() -> float:
        if minutes is not None:
            return min(1.0, (time.time() - t_train) / (minutes * 60))
        return step / cfg.steps

    while progress() < 1.0:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, progress(), cfg)
        x = _batch(stream, cfg, gen)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 20 == 0:
            recent = sum(losses[-20:]) / 20
            print(f"step {step} ({progress():.0%}) loss {recent:.3f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{time.time() - t0:.0f}s", flush=True)
        if step % cfg.sample_every == 0:
            print("  sample:", repr(sample(model, tokenizer, SAMPLE_PROMPTS[0])), flush=True)
    final_loss = sum(losses[-20:]) / min(20, len(losses))
    summary = {
        "config": asdict(cfg) | {"steps": step},
        "parameters": n_params,
        "corpus_tokens": len(stream),
        "unigram_entropy_nats": round(h1, 4),
        "final_train_loss_nats": round(final_loss, 4),
        "minutes": round((time.time() - t0) / 60, 1),
        "torch": torch.__version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    model.config.dtype = "bfloat16"
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    save_tokenizer(tokenizer, out)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=128,
    ).save_pretrained(out)
    (out / "training_info.json").write_text(json.dumps(summary, indent=2) + "\n")
    for prompt in SAMPLE_PROMPTS:
        print(f"{prompt!r} -> {sample(model.float(), tokenizer, prompt, 64)!r}")
    print(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> None:
    from appliance.demo import MODEL_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="wall-time budget; overrides --steps")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    args = parser.parse_args(argv)
    train(TrainConfig(steps=args.steps, seed=args.seed), args.out, args.minutes)


if __name__ == "__main__":
    main()
