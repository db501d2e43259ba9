"""EngineCore: one replica's synchronous engine. add_request / abort_request / step, in one process.

Each step: the scheduler picks sequences and token counts, the executor runs them over the paged KV cache, the
sampler picks next tokens, the detokenizer turns them into text and watches for stop strings, and finished
sequences give their blocks back. The async loop and the internal server drive this class.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from appliance.runtime.block_manager import BlockManager
from appliance.runtime.config import EngineConfig
from appliance.runtime.detokenizer import IncrementalDetokenizer
from appliance.runtime.executor.interface import Executor, StepBatch
from appliance.runtime.guided import GuidedDecoding
from appliance.runtime.model.args import ModelArgs
from appliance.runtime.outputs import CompletionOutput, RequestMetrics, RequestOutput
from appliance.runtime.sampler import SampleState, Sampler
from appliance.runtime.sampling_params import SamplingParams
from appliance.runtime.scheduler import Scheduler, SchedulerOutput
from appliance.runtime.sequence import Sequence
from appliance.runtime.stage_clock import NULL_CLOCK, NullClock
from appliance.runtime.stats import EngineStats


class ContextLengthExceeded(ValueError):
    """The prompt does not fit the model's context; the gateway answers 400 context_length_exceeded."""

    code = "context_length_exceeded"


@dataclass
class _Request:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    metrics: RequestMetrics
    seqs: list[Sequence] = field(default_factory=list)
    detoks: list[IncrementalDetokenizer] = field(default_factory=list)
    states: list[SampleState] = field(default_factory=list)
    logprobs: list[list[dict[str, Any]]] = field(default_factory=list)
    pending_siblings: list[Sequence] = field(default_factory=list)
    prompt_logprobs: list[dict[str, Any]] | None = None  # filled by the prefill when params.prompt_logprobs is set
    prompt_logprobs_sent: bool = False

    @property
    def finished(self) -> bool:
        return not self.pending_siblings and all(s.is_finished for s in self.seqs)


def _eos_token_ids(model_dir: str, args: ModelArgs, tokenizer: Any) -> set[int]:
    ids = set(args.eos_token_ids)
    gen = Path(model_dir) / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        ids |= {eos} if isinstance(eos, int) else set(eos or [])
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class EngineCore:
    """The engine of one replica. Not thread-safe: drive it from one thread (or one asyncio loop)."""

    clock: NullClock = NULL_CLOCK  # the step profile (appliance/runtime/step_profile.py) installs a StageClock

    def __init__(self, config: EngineConfig, executor: Executor | None = None) -> None:
        from transformers import AutoTokenizer

        self.config = config
        self.args = ModelArgs.from_hf(config.hf_config)
        if self.args.sliding_window and self.args.sliding_window < config.max_model_len:
            config.max_model_len = self.args.sliding_window  # no sliding-window attention: stay exact instead
        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        if executor is None:
            from appliance.runtime.executor import create_executor

            executor = create_executor(config, self.args)
        self.executor = executor
        self.num_kv_blocks = executor.num_kv_blocks
        config.max_model_len = min(config.max_model_len, self.num_kv_blocks * config.block_size)
        self.max_model_len = config.max_model_len
        self.vocab_size = self.args.vocab_size
        self.eos_token_ids = _eos_token_ids(config.model, self.args, self.tokenizer)
        self.block_manager = BlockManager(self.num_kv_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(
            self.block_manager,
            config.max_num_seqs,
            config.max_num_batched_tokens,
            config.enable_chunked_prefill,
            config.scheduling_policy,
            config.step_token_budget,
        )
        self.sampler = Sampler(config.device, config.seed)
        self.guided = GuidedDecoding(self.tokenizer, self.vocab_size)  # grammars; the backend loads on first use
        self.requests: dict[str, _Request] = {}
        self._stats = EngineStats(kv_blocks_total=self.num_kv_blocks)

    def add_request(
        self,
        request_id: str,
        prompt: str | list[int],
        params: SamplingParams | None = None,
        cache_salt: str | None = None,
        priority: int = 0,
    ) -> None:
        """Queue a request. Raises ValueError naming the offending field; other requests are unaffected."""
        params = params or SamplingParams()
        if not isinstance(params, SamplingParams):
            raise ValueError("params must be a SamplingParams")
        params.validate()
        if not isinstance(request_id, str) or not request_id:
            raise ValueError("request_id must be a non-empty string")
        if request_id in self.requests:
            raise ValueError(f"request_id {request_id!r} is already in use")
        if cache_salt is not None and not isinstance(cache_salt, str):
            raise ValueError("cache_salt must be a string")
        if not isinstance(priority, int):
            raise ValueError("priority must be an integer")
        if params.prompt_logprobs is not None and not getattr(self.executor, "supports_prompt_logprobs", False):
            raise ValueError(f"prompt_logprobs are not available on this replica: its executor "
                             f"({type(self.executor).__name__}) returns only the last position's logits")
        text, token_ids = self._tokenize(prompt)
        grammars = [self.guided.matcher(params.guided) for _ in range(params.n)] if params.guided else [None] * params.n
        now = time.monotonic()
        req = _Request(request_id, text, token_ids, params, RequestMetrics(arrival_time=now))
        max_tokens = min(params.max_tokens, self.max_model_len - len(token_ids))
        for index in range(params.n):
            seq = Sequence(request_id, token_ids, index, cache_salt, priority, max_tokens, params)
            seed = None if params.seed is None else params.seed + index
            req.seqs.append(seq)
            req.detoks.append(IncrementalDetokenizer(self.tokenizer, token_ids, params.stop, params.skip_special_tokens))
            req.states.append(SampleState(params, seq.token_ids, len(token_ids), self.sampler.make_generator(seed),
                                          grammars[index]))
            req.logprobs.append([])
        if params.prompt_logprobs is not None:
            req.seqs[0].needs_prompt_logits = True
            first = token_ids[0]
            req.prompt_logprobs = [{"token_id": first, "token": self.tokenizer.decode([first]), "logprob": None,
                                    "top": []}]
        self.requests[request_id] = req
        self.scheduler.add(req.seqs[0])
        req.pending_siblings = req.seqs[1:]

    def _tokenize(self, prompt: str | list[int]) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("prompt must not be empty")
            ids = self.tokenizer(prompt).input_ids
            text = prompt
        elif isinstance(prompt, (list, tuple)):
            ids, text = list(prompt), None
            if not ids:
                raise ValueError("prompt must not be empty")
            bad = [t for t in ids if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < self.vocab_size]
            if bad:
                raise ValueError(f"prompt contains unknown token id {bad[0]!r} (vocab size {self.vocab_size})")
        else:
            raise ValueError("prompt must be a string or a list of token ids")
        if not ids:
            raise ValueError("prompt must not be empty")
        if len(ids) >= self.max_model_len:
            raise ContextLengthExceeded(
                f"prompt is {len(ids)} tokens, which leaves no room in the model's context length "
                f"(max_model_len {self.max_model_len})"
            )
        return text, ids

    def abort_request(self, request_id: str) -> None:
        """Stop a request now and free its KV blocks; unknown or finished ids are ignored."""
        req = self.requests.pop(request_id, None)
        if req is None:
            return
        for seq in req.seqs:
            if not seq.is_finished:
                self.scheduler.finish(seq, "abort")

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    def step(self) -> list[RequestOutput]:
        """Run one scheduling step; returns an output for every request that made progress or finished."""
        t0 = time.perf_counter()
        clock = self.clock
        sched = self.scheduler.schedule()
        clock.mark("scheduler")
        if sched.is_empty:
            self._record_step(sched, t0, 0.0)
            return []
        now = time.monotonic()
        batch = StepBatch()
        sampled_seqs: list[Sequence] = []
        for seq, n in sched.scheduled:
            start = seq.num_computed_tokens
            needs_logits = start + n == len(seq)
            batch.add(seq.token_ids[start : start + n], start, seq.block_table, needs_logits, seq.needs_prompt_logits)
            if needs_logits:
                sampled_seqs.append(seq)
            req = self.requests[seq.request_id]
            if req.metrics.first_scheduled_time is None:
                req.metrics.first_scheduled_time = now
        clock.mark("step batch (engine)")
        logits = self.executor.execute(batch)
        if any(batch.all_logits):
            logits = self._take_prompt_logprobs(batch, sched, logits)
        forward = self.executor.last_forward_s
        clock.mark("prompt logprobs")
        self.scheduler.postprocess(sched)
        self._stats.prompt_tokens_total += sched.num_batched_tokens - len(sampled_seqs)
        clock.mark("scheduler")
        outputs = self._process_samples(logits, sampled_seqs) if sampled_seqs else []
        self._record_step(sched, t0, forward)
        clock.mark("detokenize+outputs")
        return outputs

    def _take_prompt_logprobs(self, batch: StepBatch, sched: SchedulerOutput, logits: Any) -> Any:
        """Record the prompt logprobs from the all-position rows of this step's logits; returns the rows the
        sampler takes (one per sequence with needs_logits). Row r of a chunk starting at position s predicts token
        s + r + 1, so a chunk's rows cover the prompt tokens after its first and the next chunk starts where they
        stop: chunked prefill gives every position."""
        import torch

        sample_rows: list[int] = []
        row = 0
        for i, (seq, n) in enumerate(sched.scheduled):
            count = batch.logit_rows(i)
            if batch.wants_all_logits(i):
                req = self.requests[seq.request_id]
                start = batch.start_positions[i]
                targets = seq.token_ids[start + 1 : min(start + n + 1, seq.num_prompt_tokens)]
                if targets:
                    del req.prompt_logprobs[start + 1 :]  # a recompute after preemption starts over
                    lp = torch.log_softmax(logits[row : row + len(targets)].float(), dim=-1)
                    ids = torch.tensor(targets, device=lp.device)
                    chosen = lp.gather(1, ids[:, None]).squeeze(1).tolist()
                    k = req.params.prompt_logprobs
                    top_v, top_i = lp.topk(k, dim=-1) if k else (lp[:, :0], lp[:, :0].long())
                    for t, v, tv, ti in zip(targets, chosen, top_v.tolist(), top_i.tolist()):
                        req.prompt_logprobs.append(self._logprob_entry(t, (v, list(zip(ti, tv)))))
                if len(req.prompt_logprobs) >= seq.num_prompt_tokens:
                    seq.needs_prompt_logits = False
            if batch.needs_logits[i]:
                sample_rows.append(row + count - 1)
            row += count
        return logits[sample_rows]

    def _process_samples(self, logits: Any, seqs: list[Sequence]) -> list[RequestOutput]:
        states = [self.requests[s.request_id].states[s.index] for s in seqs]
        result = self.sampler(logits, states)
        self.clock.mark("sampling")
        now = time.monotonic()
        touched: dict[str, _Request] = {}
        stepped = {s.seq_id for s in seqs}
        for seq, token, lp in zip(seqs, result.token_ids, result.logprobs):
            req = self.requests[seq.request_id]
            touched[req.request_id] = req
            if seq.max_tokens == 0:  # prompt only (echo, prompt logprobs): the prefill was all it asked for
                self._finish_without_completion(seq, req)
                continue
            seq.append_token(token)
            self._stats.generation_tokens_total += 1
            if lp is not None:
                req.logprobs[seq.index].append(self._logprob_entry(token, lp))
            grammar = req.states[seq.index].grammar
            if grammar is not None:
                grammar.accept(token)
            reason = self._check_finish(seq, req, token)
            if reason:
                req.detoks[seq.index].flush_pending()
                self.scheduler.finish(seq, reason)
            if seq.index == 0:
                m = req.metrics
                if m.first_token_time is None:
                    m.first_token_time = now
                else:
                    m.inter_token_latencies.append(now - m.last_token_time)
                m.last_token_time = now
            if req.pending_siblings and seq.index == 0:
                for sibling in req.pending_siblings:
                    self.scheduler.add(sibling)
                req.pending_siblings = []
        outputs = []
        for req in touched.values():
            if req.finished:
                req.metrics.finished_time = now
                del self.requests[req.request_id]
            outputs.append(self._make_output(req, stepped))
        return outputs

    def _finish_without_completion(self, seq: Sequence, req: _Request) -> None:
        self.scheduler.finish(seq, "length")
        req.metrics.first_token_time = req.metrics.last_token_time = time.monotonic()
        for sibling in req.pending_siblings:  # they would only recompute the same prompt
            self.scheduler.finish(sibling, "length")
        req.pending_siblings = []

    def _check_finish(self, seq: Sequence, req: _Request, token: int) -> str | None:
        params = req.params
        if not params.ignore_eos and token in self.eos_token_ids:
            return "stop"
        if token in params.stop_token_ids:
            return "stop"
        if req.detoks[seq.index].add_token(token):
            return "stop"
        grammar = req.states[seq.index].grammar
        if grammar is not None and grammar.finished:
            return "stop"
        if seq.num_completion_tokens >= seq.max_tokens:
            return "length"
        return None

    def _logprob_entry(self, token: int, lp: tuple[float, list[tuple[int, float]]]) -> dict[str, Any]:
        decode = self.tokenizer.decode
        return {
            "token_id": token,
            "token": decode([token]),
            "logprob": lp[0],
            "top": [{"token_id": t, "token": decode([t]), "logprob": v} for t, v in lp[1]],
        }

    def _make_output(self, req: _Request, stepped: set[int]) -> RequestOutput:
        completions = []
        for seq, detok, lps in zip(req.seqs, req.detoks, req.logprobs):
            finished = seq.is_finished
            delta = detok.take_delta(finished)
            new_ids = seq.token_ids[-1:] if seq.seq_id in stepped and seq.num_completion_tokens else []
            completions.append(
                CompletionOutput(
                    index=seq.index,
                    token_ids=seq.completion_token_ids,
                    text=detok.text[: detok.emitted],
                    new_token_ids=new_ids,
                    new_text=delta,
                    logprobs=list(lps) if req.params.logprobs is not None else None,
                    finish_reason=seq.finish_reason,
                )
            )
        prompt_logprobs = None
        if req.prompt_logprobs is not None and not req.prompt_logprobs_sent and not req.seqs[0].needs_prompt_logits:
            prompt_logprobs, req.prompt_logprobs_sent = req.prompt_logprobs, True
        return RequestOutput(req.request_id, req.prompt_token_ids, completions, req.metrics, req.prompt,
                             prompt_logprobs)

    def _record_step(self, sched: SchedulerOutput, t0: float, forward: float) -> None:
        s = self._stats
        elapsed = time.perf_counter() - t0
        if sched.scheduled:
            s.steps += 1
            s.step_time_s, s.forward_time_s = elapsed, forward
            s.step_time_total_s += elapsed
            s.forward_time_total_s += forward
        s.last_step_num_batched_tokens = sched.num_batched_tokens
        s.last_step_num_seqs = len(sched.scheduled)

    def stats(self) -> EngineStats:
        """A snapshot of the engine's counters (a copy: later steps do not change it)."""
        s = self._stats
        s.num_running = len(self.scheduler.running)
        s.num_waiting = len(self.scheduler.waiting)
        s.kv_blocks_used = self.block_manager.num_used_blocks
        s.prefix_cache_queried_tokens = self.block_manager.prefix_queried_tokens
        s.prefix_cache_hit_tokens = self.block_manager.prefix_hit_tokens
        s.num_preemptions = self.scheduler.num_preemptions
        return replace(s)
