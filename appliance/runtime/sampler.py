"""Turn a step's logits into next tokens: greedy, temperature, top-k, top-p, min-p, penalties, seeds, logprobs.

Vectorized over the batch; the all-greedy batch without penalties or logprobs is one argmax. A random row takes one
uniform draw and picks its token by inverse CDF over its filtered distribution (top-p is decided among the 1,024
most likely tokens when they hold the mass p, without sorting the vocabulary). A request with a seed draws from its
own ``torch.Generator``, so its tokens do not depend on what else is in the batch. Logprobs are of the model's raw
distribution (log-softmax of the logits, before penalties and temperature). A row with a grammar (structured
outputs, enforced tool calls) has every token its grammar does not allow next masked to -inf first, whatever the
device that computed the logits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from appliance.runtime.guided.interface import Matcher, allocate_bitmask, allowed_tokens
from appliance.runtime.sampling_params import SamplingParams


@dataclass
class SampleState:
    """What the sampler needs to know of one sequence."""

    params: SamplingParams
    token_ids: list[int]  # prompt + completion so far
    num_prompt_tokens: int
    generator: torch.Generator | None = None
    grammar: Matcher | None = None  # guided decoding: only tokens it allows are sampled


@dataclass
class SamplerOutput:
    token_ids: list[int]
    logprobs: list[tuple[float, list[tuple[int, float]]] | None]  # per row: (sampled logprob, top-N [(id, lp)])


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise argmax, the first index of the maximum as torch.argmax gives it (NaN counts as the maximum); on the
    CPU ``max(dim).indices`` computes it 2.5x faster (1.0 vs 0.4 ms for 64 x 24,000 float32 logits, 2 threads)."""
    return logits.max(dim=-1).indices


def _needs_penalty(p: SamplingParams) -> bool:
    return bool(p.presence_penalty or p.frequency_penalty or p.repetition_penalty != 1.0)


class Sampler:
    def __init__(self, device: str = "cpu", seed: int = 0) -> None:
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def make_generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        return g

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor, states: list[SampleState]) -> SamplerOutput:
        n = len(states)
        params = [s.params for s in states]
        want_lp = [p.logprobs is not None for p in params]
        raw_logits = logits
        guided = [i for i, s in enumerate(states) if s.grammar is not None]
        if guided:
            logits = self._mask(logits, [states[i].grammar for i in guided], guided)
        if not any(want_lp) and all(p.temperature == 0 and not _needs_penalty(p) for p in params):
            return SamplerOutput(_argmax(logits).tolist(), [None] * n)

        raw = torch.log_softmax(raw_logits, dim=-1) if any(want_lp) else None
        pen_rows = [i for i, p in enumerate(params) if _needs_penalty(p)]
        if pen_rows:
            logits = logits.clone()
            self._apply_penalties(logits, [states[i] for i in pen_rows], pen_rows)

        chosen = _argmax(logits)
        rand_rows = [i for i, p in enumerate(params) if p.temperature > 0]
        if rand_rows:
            idx = torch.tensor(rand_rows, device=logits.device)
            chosen[idx] = self._sample(logits[idx], [states[i] for i in rand_rows])
        token_ids = chosen.tolist()

        out_lp: list[tuple[float, list[tuple[int, float]]] | None] = [None] * n
        if raw is not None:
            rows = [i for i in range(n) if want_lp[i]]
            sub = raw[rows]
            sampled = sub.gather(1, chosen[rows][:, None]).squeeze(1).tolist()
            k = max(params[i].logprobs for i in rows)
            top_v, top_i = (sub.topk(k, dim=-1) if k else (sub[:, :0], sub[:, :0].long()))
            top_v, top_i = top_v.tolist(), top_i.tolist()
            for j, i in enumerate(rows):
                kk = params[i].logprobs
                out_lp[i] = (sampled[j], list(zip(top_i[j][:kk], top_v[j][:kk])))
        return SamplerOutput(token_ids, out_lp)

    @staticmethod
    def _mask(logits: torch.Tensor, grammars: list[Matcher], rows: list[int]) -> torch.Tensor:
        vocab = logits.shape[1]
        bitmask = allocate_bitmask(len(rows), max(vocab, grammars[0].vocab_size))
        for j, grammar in enumerate(grammars):
            grammar.fill_mask(bitmask, j)
        allowed = allowed_tokens(bitmask, vocab).to(logits.device)
        logits = logits.clone()
        idx = torch.tensor(rows, device=logits.device)
        logits[idx] = logits[idx].masked_fill(~allowed, float("-inf"))
        return logits

    def _apply_penalties(self, logits: torch.Tensor, states: list[SampleState], rows: list[int]) -> None:
        dev = logits.device
        vocab = logits.shape[1]
        m = len(rows)
        longest_out = max(len(s.token_ids) - s.num_prompt_tokens for s in states)
        longest_all = max(len(s.token_ids) for s in states)
        out_ids = torch.full((m, max(longest_out, 1)), vocab, dtype=torch.int64)
        all_ids = torch.full((m, max(longest_all, 1)), vocab, dtype=torch.int64)
        for j, s in enumerate(states):
            completion = s.token_ids[s.num_prompt_tokens :]
            if completion:
                out_ids[j, : len(completion)] = torch.tensor(completion)
            all_ids[j, : len(s.token_ids)] = torch.tensor(s.token_ids)
        out_ids, all_ids = out_ids.to(dev), all_ids.to(dev)
        counts = torch.zeros(m, vocab + 1, device=dev).scatter_add_(1, out_ids, torch.ones_like(out_ids, dtype=torch.float))
        counts = counts[:, :vocab]
        seen = torch.zeros(m, vocab + 1, dtype=torch.bool, device=dev).scatter_(1, all_ids, True)[:, :vocab]
        ps = [s.params for s in states]
        rep = torch.tensor([p.repetition_penalty for p in ps], device=dev)[:, None]
        freq = torch.tensor([p.frequency_penalty for p in ps], device=dev)[:, None]
        pres = torch.tensor([p.presence_penalty for p in ps], device=dev)[:, None]
        idx = torch.tensor(rows, device=dev)
        sub = logits[idx]
        sub = torch.where(seen, torch.where(sub > 0, sub / rep, sub * rep), sub)
        sub = sub - freq * counts - pres * (counts > 0)
        logits[idx] = sub

    def _sample(self, logits: torch.Tensor, states: list[SampleState]) -> torch.Tensor:
        dev = logits.device
        ps = [s.params for s in states]
        temp = torch.tensor([p.temperature for p in ps], device=dev, dtype=logits.dtype)[:, None]
        logits = logits / temp
        vocab = logits.shape[1]
        ks = [p.top_k if 0 < p.top_k < vocab else vocab for p in ps]
        if min(ks) < vocab:
            kth = logits.topk(max(ks), dim=-1).values
            cut = kth.gather(1, torch.tensor(ks, device=dev)[:, None] - 1)
            logits = logits.masked_fill(logits < cut, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if any(p.min_p > 0 for p in ps):
            min_p = torch.tensor([p.min_p for p in ps], device=dev, dtype=probs.dtype)[:, None]
            probs = probs.masked_fill(probs < min_p * probs.max(dim=-1, keepdim=True).values, 0.0)
        uniform = self._uniforms(states, dev)
        chosen = torch.empty(len(states), dtype=torch.int64, device=dev)
        nucleus = [j for j, p in enumerate(ps) if p.top_p < 1.0]
        whole = [j for j, p in enumerate(ps) if p.top_p >= 1.0]
        if nucleus:
            idx = torch.tensor(nucleus, device=dev)
            top_p = torch.tensor([ps[j].top_p for j in nucleus], device=dev, dtype=probs.dtype)[:, None]
            chosen[idx] = self._sample_nucleus(probs[idx], top_p, uniform[idx])
        if whole:
            idx = torch.tensor(whole, device=dev)
            chosen[idx] = _inverse_cdf(probs[idx], uniform[idx])
        return chosen

    def _uniforms(self, states: list[SampleState], dev: torch.device | str) -> torch.Tensor:
        """One uniform draw per row: seeded rows from their own generator, so their tokens depend only on them."""
        u = torch.empty(len(states), device=dev)
        unseeded = [j for j, s in enumerate(states) if s.generator is None]
        if unseeded:
            u[unseeded] = torch.rand(len(unseeded), device=dev, generator=self.generator)
        for j, s in enumerate(states):
            if s.generator is not None:
                u[j] = torch.rand(1, device=dev, generator=s.generator)[0]
        return u

    @staticmethod
    def _sample_nucleus(probs: torch.Tensor, top_p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Top-p: the smallest set of most likely tokens whose mass reaches p, then an inverse-CDF draw in it.

        Sorting the whole vocabulary is the expensive part (145 ms for 64 rows of 32,000 on one core), so the
        NUCLEUS_CANDIDATES most likely tokens are taken first; a row whose candidates already hold mass p (nearly
        always) is decided among them exactly, and only the other rows are sorted in full."""
        vocab = probs.shape[1]
        total = probs.sum(dim=-1, keepdim=True)
        c = min(vocab, NUCLEUS_CANDIDATES)
        cand_p, cand_i = probs.topk(c, dim=-1) if c < vocab else probs.sort(dim=-1, descending=True)
        short = (cand_p.sum(dim=-1, keepdim=True) < top_p * total).squeeze(1).nonzero().squeeze(1)
        if short.numel():
            full_p, full_i = probs[short].sort(dim=-1, descending=True)
            rows = short.tolist()
            out = torch.empty(probs.shape[0], dtype=torch.int64, device=probs.device)
            keep = torch.ones(probs.shape[0], dtype=torch.bool, device=probs.device)
            keep[short] = False
            if keep.any():
                out[keep] = _nucleus_draw(cand_p[keep], cand_i[keep], top_p[keep] * total[keep], u[keep])
            out[rows] = _nucleus_draw(full_p, full_i, top_p[short] * total[short], u[short])
            return out
        return _nucleus_draw(cand_p, cand_i, top_p * total, u)


NUCLEUS_CANDIDATES = 1024


def _nucleus_draw(sorted_p: torch.Tensor, order: torch.Tensor, mass: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """sorted_p [n, c] descending with token ids `order`; keep tokens whose preceding mass is below `mass` (the first
    one always), then draw by inverse CDF with uniforms u [n]."""
    cum = sorted_p.cumsum(dim=-1)
    drop = (cum - sorted_p) >= mass
    drop[:, 0] = False
    kept = sorted_p.masked_fill(drop, 0.0)
    return order.gather(1, _inverse_cdf(kept, u)[:, None]).squeeze(1)


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Column index drawn from each row of unnormalized, non-negative probs [n, v] with uniforms u [n] in [0, 1):
    the first column whose cumulative mass exceeds u * total. A zero-probability column is never chosen."""
    cdf = probs.cumsum(dim=-1)
    target = (u[:, None] * cdf[:, -1:]).contiguous()
    idx = torch.searchsorted(cdf, target, right=True).squeeze(1)
    over = idx >= probs.shape[1]  # u * total rounded up to total: take the most likely column instead
    if over.any():
        idx[over] = probs[over].argmax(dim=-1)
    return idx
