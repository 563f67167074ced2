"""The scheduler of the engine model: vLLM V1's ``Scheduler.schedule`` on simulated state.

The model follows ``vllm/v1/core/sched/scheduler.py`` of vLLM 0.32 (the pinned live version),
without prefix caching, speculative decoding, LoRA or KV connectors:

* A request has ``num_tokens = prompt + generated`` tokens and ``computed`` of them in the KV cache.
  Each step first walks the running list in order: a request is scheduled for
  ``num_tokens − computed`` new tokens (one for a decoding request, the rest of its prefill
  otherwise), capped by `long_prefill_token_threshold` (only while more than one request is
  running or waiting) and by the step's remaining token budget. It needs
  ``ceil((computed + n) / block_size)`` KV blocks in all; when they are not free, the scheduler
  preempts (the waiting queue's victim rule, `exfairs.sim.queues`) until they are, or until the
  request itself is the victim. A victim's blocks are freed, ``computed`` drops to 0 (it will
  recompute prompt + generated tokens, as V1 does) and it goes back to the front of the waiting
  queue. A request that cannot get its blocks ends the running walk.
* Only when nothing was preempted in the step, waiting requests are admitted in queue order while
  the token budget is positive, fewer than `max_num_seqs` run, and the head's first chunk gets its
  blocks; a head that does not fit stops admission (it blocks the queue, as in vLLM).
* A request that catches up (``computed == num_tokens``) emits one token at the end of the step;
  its first token comes at the end of the step that completes its prefill, and it leaves the
  engine (freeing its blocks) when it has emitted `Request.output_tokens` tokens.
* A request whose piece is one token on top of a caught-up cache, after its first token, is a
  decode sequence (context ``prompt + generated``); anything else is a prefill chunk of n tokens
  on c cached ones. The same rule decides what `Policy.on_service` hears: the last 1-token piece
  of a recomputation after preemption is exactly such a decode step, so it is a decode token.

Decoding requests are kept lazily: their counters grow by one per step, so the scheduler holds
only aggregates (how many decode, their summed context, how many need a new KV block at each step
phase — a request needs one whenever its cache is block-aligned — and a heap of the steps at which
they finish). A step whose pieces all fit the budget and the free blocks (the usual case) is
planned from those aggregates plus the few prefill chunks; anything else (the budget cuts the
walk, or a request lacks blocks) materialises every running request and walks the list as vLLM
does. The same aggregates give, in closed form, how many identical decode-only steps can follow
(`run_limit`): up to the first finish and the first step whose blocks would not be free.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from exfairs.sim.config import EngineConfig
from exfairs.sim.plan import Chunk, StepInfo, StepObserver, StepOutcome, StepPlan
from exfairs.sim.queues import Seq, VictimChooser, WaitingQueue


class Scheduler:
    """Running requests, waiting queue and KV blocks of one simulated engine.

    `schedule(now)` plans the next step (allocating blocks, preempting, admitting); `apply(plan,
    end)` executes it, `apply_run(plan, ends)` executes it and the identical decode-only steps
    after it (at most `run_limit(plan)` in all). `step_end_s` holds every step's end time.
    """

    def __init__(self, config: EngineConfig, waiting: WaitingQueue, victim: VictimChooser,
                 observer: StepObserver | None = None) -> None:
        self.cfg = config
        self.waiting = waiting
        self.victim = victim
        self.observer = observer
        # Set by the gate-mode runner for EngineConfig.hook_order "stream": steps that finish a
        # request report their pieces in output order (StepOutcome.order). Off, no cost.
        self.record_order = False
        # Engine mode with an admission limit: asked before each admission of a waiting request
        # (`PolicyWaiting.admissible`); False stops admission for the step ("limit"). It may
        # take refused requests out of the queue.
        self.admit_check: Callable[[float], bool] | None = None
        self.running: dict[int, Seq] = {}  # request id → seq, in running-list order
        self.free_blocks = config.num_gpu_blocks
        self.step_end_s: list[float] = []  # end time of every step, by step index
        self._bs = config.block_size
        self._next_pos = 0
        self.plan_start_s = 0.0  # when the last plan was made
        # Running requests that do not decode (prefill or recompute under way), in running order.
        self._pre: dict[int, Seq] = {}
        # Lazy decoders: count, Σ (computed − base_k + 1), counts by (computed − base_k) mod
        # block_size, decoders per client, and (finish step, request id, seq) entries.
        self._dec_n = 0
        self._dec_sum = 0
        self._dec_res = [0] * self._bs
        self._dec_by_client: dict[int, int] = {}
        self._finish: list[tuple[int, int, Seq]] = []
        # Decoders the last general walk did not reach: not lazy during that step.
        self._parked: list[Seq] = []

    @property
    def steps(self) -> int:
        """Engine steps executed so far (run steps included)."""
        return len(self.step_end_s)

    def idle(self) -> bool:
        """Nothing running and nothing waiting."""
        return not self.running and len(self.waiting) == 0

    # -- lazy decoders -----------------------------------------------------------------------------
    def _dec_add(self, s: Seq, k: int) -> None:
        """`s` decodes from step `k` on (its counters are exact now)."""
        s.dec = True
        s.base_k = k
        off = s.computed - k
        self._dec_res[off % self._bs] += 1
        self._dec_sum += off + 1
        self._dec_n += 1
        self._dec_by_client[s.client] = self._dec_by_client.get(s.client, 0) + 1
        s.finish_k = k + s.out - s.gen - 1
        heapq.heappush(self._finish, (s.finish_k, s.rid, s))

    def _dec_remove(self, s: Seq) -> None:
        """Stop tracking `s` lazily; its counters become exact at the current step count."""
        k = len(self.step_end_s)
        off = s.computed - s.base_k
        self._dec_res[off % self._bs] -= 1
        self._dec_sum -= off + 1
        self._dec_n -= 1
        n = self._dec_by_client[s.client] - 1
        if n:
            self._dec_by_client[s.client] = n
        else:
            del self._dec_by_client[s.client]
        d = k - s.base_k
        if d > 0:
            s.computed += d
            s.gen += d
            s.emit_range(s.base_k, k)
        s.blocks = -(-s.computed // self._bs)
        s.dec = False

    def _dec_blocks(self, k: int, n_steps: int) -> int:
        """Blocks the decoders need over steps ``k .. k + n_steps − 1``."""
        bs = self._bs
        full, part = divmod(n_steps, bs)
        res = self._dec_res
        return full * self._dec_n + sum(res[(-(k + j)) % bs] for j in range(part))

    # -- scheduling ------------------------------------------------------------------------------
    def schedule(self, now_s: float) -> StepPlan:
        """Plan the next step at `now_s` (vLLM ``Scheduler.schedule``): allocates its KV blocks,
        performs its preemptions and admissions. Preempted requests are back in `waiting`."""
        cfg = self.cfg
        bs = self._bs
        k = len(self.step_end_s)
        self.plan_start_s = now_s
        budget = cfg.max_num_batched_tokens
        threshold = cfg.long_prefill_token_threshold
        if len(self.running) + len(self.waiting) <= 1:
            threshold = 0  # vLLM 0.32: nobody to starve
        # Fast check: does every running request get its whole piece and its blocks?
        total = self._dec_n
        need = self._dec_res[(-k) % bs] if total else 0
        pieces: list[tuple[Seq, int, int]] = []
        for s in self._pre.values():
            n = s.prompt + s.gen - s.computed
            if 0 < threshold < n:
                n = threshold
            b = (s.computed + n + bs - 1) // bs - s.blocks
            pieces.append((s, n, b))
            total += n
            need += b
        if total > budget or need > self.free_blocks:
            return self._schedule_general(now_s, k, threshold)
        self.free_blocks -= need
        chunks: list[Chunk] = []
        p_tok = p_attn = 0
        for s, n, b in pieces:
            s.blocks += b
            c = s.computed
            chunks.append(Chunk(s, n, c, False))
            p_tok += n
            p_attn += n * (c + n)
        budget -= total
        admitted, stop, budget = self._admit(now_s, threshold, budget, chunks)
        for ch in chunks[len(pieces):]:
            p_tok += ch.tokens
            p_attn += ch.tokens * (ch.computed + ch.tokens)
        dn = self._dec_n
        return StepPlan(k, tuple(chunks), True, dn, self._dec_sum + dn * k if dn else 0,
                        p_tok, p_attn, (), admitted, stop)

    def _schedule_general(self, now_s: float, k: int, threshold: int) -> StepPlan:
        """The running walk in full generality (the budget cuts it, or a request lacks blocks):
        decoders stay lazy while scheduled; a preempted one is materialised; one the walk does
        not reach is set aside (`_parked`) and decodes again from the next step."""
        bs = self._bs
        running = list(self.running.values())
        budget = self.cfg.max_num_batched_tokens
        sched: list[tuple[Seq, int, int]] = []  # (seq, tokens, blocks allocated if lazy)
        preempted: list[Seq] = []
        i = 0
        while i < len(running) and budget > 0:
            s = running[i]
            if s.dec:
                n = 1
                need = 1 if (s.computed + k - s.base_k) % bs == 0 else 0
            else:
                n = s.prompt + s.gen - s.computed
                if 0 < threshold < n:
                    n = threshold
                if n > budget:
                    n = budget
                need = (s.computed + n + bs - 1) // bs - s.blocks
            scheduled = True
            while need > self.free_blocks:
                v = self.victim(running, now_s)
                victim = running.pop(v)
                if v < i:
                    i -= 1
                for j, (x, m, lazy_need) in enumerate(sched):
                    if x is victim:
                        budget += m
                        self.free_blocks += lazy_need
                        del sched[j]
                        break
                if victim.dec:
                    self._dec_remove(victim)
                else:
                    self._pre.pop(victim.rid, None)
                self._preempt(victim, now_s)
                preempted.append(victim)
                if victim is s:
                    scheduled = False
                    break
            if not scheduled:
                break
            self.free_blocks -= need
            if s.dec:
                sched.append((s, 1, need))
            else:
                s.blocks += need
                sched.append((s, n, 0))
            budget -= n
            i += 1
        parked = [s for s in running[i:] if s.dec]
        for s in parked:
            self._dec_remove(s)
        self.running = {s.rid: s for s in running}
        chunks = [Chunk(s, n, s.computed,
                        n == 1 and s.gen >= 1 and s.computed == s.prompt + s.gen - 1)
                  for s, n, _ in sched if not s.dec]
        if preempted:
            admitted: tuple[Seq, ...] = ()
            stop = "preempted"
        else:
            admitted, stop, budget = self._admit(now_s, threshold, budget, chunks)
        dn = self._dec_n
        if not chunks and not dn:
            for s in parked:  # nothing runs: they decode from this very step
                self._dec_add(s, k)
            parked = []
        self._parked = parked
        d_seqs, d_ctx = dn, (self._dec_sum + dn * k if dn else 0)
        p_tok = p_attn = 0
        for ch in chunks:
            if ch.decode:
                d_seqs += 1
                d_ctx += ch.computed + 1
            else:
                p_tok += ch.tokens
                p_attn += ch.tokens * (ch.computed + ch.tokens)
        return StepPlan(k, tuple(chunks), True, d_seqs, d_ctx, p_tok, p_attn, tuple(preempted),
                        admitted, stop)

    def _admit(self, now_s: float, threshold: int, budget: int,
               chunks: list[Chunk]) -> tuple[tuple[Seq, ...], str, int]:
        """Admit waiting requests in queue order (appending their chunks); returns the admitted,
        why admission stopped, and the budget left."""
        cfg = self.cfg
        bs = self._bs
        waiting = self.waiting
        running = self.running
        max_seqs = cfg.max_num_seqs
        full_isl = cfg.reserve_full_prompt
        admitted: list[Seq] = []
        check = self.admit_check
        n_waiting = len(waiting)
        while True:
            if n_waiting == 0:
                stop = "empty"
                break
            if budget <= 0:
                stop = "budget"
                break
            if len(running) >= max_seqs:
                stop = "seqs"
                break
            if check is not None:
                ok = check(now_s)
                n_waiting = len(waiting)  # it may have refused requests
                if not ok:
                    stop = "limit"
                    break
                if n_waiting == 0:
                    stop = "empty"
                    break
            s = waiting.peek(now_s)
            n = s.prompt + s.gen - s.computed
            if 0 < threshold < n:
                n = threshold
            if n > budget:
                if not cfg.enable_chunked_prefill:
                    stop = "chunk"
                    break
                n = budget
            need = (s.computed + n + bs - 1) // bs - s.blocks
            if need > self.free_blocks:
                stop = "kv"
                break
            if full_isl and (s.prompt + s.gen + bs - 1) // bs - s.blocks > self.free_blocks:
                # vLLM 0.32 (scheduler_reserve_full_isl): the whole prompt + output so far must
                # fit in free blocks, though only the chunk is allocated.
                stop = "kv"
                break
            waiting.pop(now_s)
            n_waiting -= 1
            s.pos = self._next_pos
            self._next_pos += 1
            running[s.rid] = s
            self._pre[s.rid] = s
            self.free_blocks -= need
            s.blocks += need
            chunks.append(Chunk(s, n, s.computed, False))
            admitted.append(s)
            budget -= n
        return tuple(admitted), stop, budget

    def _preempt(self, s: Seq, now_s: float) -> None:
        self.free_blocks += s.blocks
        s.blocks = 0
        s.computed = 0
        s.preemptions += 1
        self.waiting.prepend(s, now_s)

    def report_idle_plan(self, plan: StepPlan, now_s: float) -> None:
        """Tell the observer about a plan that scheduled nothing but preempted (vLLM then runs an
        empty step and schedules again at once): a `StepInfo` with ``n_steps == 0``."""
        if self.observer is not None and plan.preempted:
            self.observer(StepInfo(now_s, now_s, 0, (), len(self.running),
                                   self.cfg.num_gpu_blocks - self.free_blocks,
                                   tuple(s.rid for s in plan.preempted), (), ()))

    # -- execution -------------------------------------------------------------------------------
    def run_limit(self, plan: StepPlan) -> int:
        """How many steps `plan` and the identical decode-only steps after it may run as one:
        up to the first finish and the last step whose new KV blocks are free (1 when `plan` is
        not decode-only, or the waiting queue's verdict could change while the batch decodes)."""
        if not plan.decode_only or self._parked or not (plan.stop in ("empty", "seqs", "budget")
                                                        or self.waiting.static):
            return 1
        k = plan.step
        fin = self._finish
        while fin and (not fin[0][2].dec or fin[0][2].finish_k != fin[0][0]):
            heapq.heappop(fin)
        limit = fin[0][0] - k + 1
        if limit <= 1:
            return 1
        # Blocks: every block_size steps each decoder needs one; within a cycle, by phase.
        bs = self._bs
        full, rem = divmod(self.free_blocks, self._dec_n)
        extra = full * bs
        if extra + 1 >= limit:
            return limit
        res = self._dec_res
        for j in range(1, bs):
            rem -= res[(-(k + j)) % bs]
            if rem < 0:
                break
            extra += 1
        return min(limit, 1 + extra)

    def apply(self, plan: StepPlan, end_s: float) -> StepOutcome:
        """Execute the planned step, ending at `end_s`."""
        k = plan.step
        observer = self.observer
        if observer is not None:
            scheduled = self._scheduled_view(plan)
            blocks_in_use = self.cfg.num_gpu_blocks - self.free_blocks
            num_running = len(self.running)
        self.step_end_s.append(end_s)
        service = {c: [0, d] for c, d in self._dec_by_client.items()}
        first: list[Seq] = []
        done: list[Seq] = []
        for ch in plan.chunks:
            s = ch.seq
            n = ch.tokens
            s.computed += n
            acc = service.get(s.client)
            if acc is None:
                acc = service[s.client] = [0, 0]
            if not ch.decode:
                acc[0] += n
            if s.computed == s.prompt + s.gen:
                s.gen += 1
                acc[1] += 1
                s.emit_range(k, k + 1)
                if s.gen == 1:
                    first.append(s)
                if s.gen >= s.out:
                    done.append(s)
        # Before _pop_finished: the lazy decoders it finishes stop being lazy there.
        order = self._output_order(plan) if self.record_order else ()
        self._pop_finished(k, done)
        if not done:
            order = ()
        for ch in plan.chunks:
            s = ch.seq
            if s.gen < s.out and s.gen >= 1 and s.computed == s.prompt + s.gen - 1:
                del self._pre[s.rid]
                self._dec_add(s, k + 1)
        if self._parked:
            for s in self._parked:
                self._dec_add(s, k + 1)
            self._parked = []
        if done:
            self._remove(done)
        if len(first) > 1:
            first.sort(key=_pos)
        out = StepOutcome((end_s,), tuple((c, a[0], a[1]) for c, a in sorted(service.items())),
                          tuple(first), tuple(done), order)
        if observer is not None:
            observer(StepInfo(self.plan_start_s, end_s, 1, scheduled, num_running, blocks_in_use,
                              tuple(s.rid for s in plan.preempted),
                              tuple(s.rid for s in plan.admitted), tuple(s.rid for s in done)))
        return out

    def apply_run(self, plan: StepPlan, ends_s: list[float]) -> StepOutcome:
        """Execute the decode-only `plan` and ``len(ends_s) − 1`` identical steps after it
        (at most `run_limit(plan)` in all), ending at `ends_s`."""
        n = len(ends_s)
        if n == 1:
            return self.apply(plan, ends_s[0])
        k = plan.step
        observer = self.observer
        if observer is not None:
            scheduled = self._scheduled_view(plan)
            num_running = len(self.running)
        # The first step's blocks were allocated by schedule(); the later steps' here.
        self.free_blocks -= self._dec_blocks(k + 1, n - 1)
        self.step_end_s.extend(ends_s)
        service = tuple((c, 0, d) for c, d in sorted(self._dec_by_client.items()))
        done: list[Seq] = []
        # A decode-only run: every running request is a lazy decoder, one token each.
        order = (tuple((s, 0, 1) for s in self.running.values() if s.dec)
                 if self.record_order else ())
        self._pop_finished(k + n - 1, done)
        if not done:
            order = ()
        if observer is not None:
            blocks_in_use = self.cfg.num_gpu_blocks - self.free_blocks
        if done:
            self._remove(done)
        out = StepOutcome(tuple(ends_s), service, (), tuple(done), order)
        if observer is not None:
            observer(StepInfo(self.plan_start_s, ends_s[-1], n, scheduled,
                              num_running, blocks_in_use, (), (), tuple(s.rid for s in done)))
        return out

    def _output_order(self, plan: StepPlan) -> tuple[tuple[Seq, int, int], ...]:
        """The step's pieces as (seq, prefill tokens, output tokens) in running-list order, the
        order of vLLM's ``EngineCoreOutputs`` (running requests, then the newly admitted, which
        are appended to the running list); call after the chunks were applied. A lazy decoder
        is one decode token; a prefill chunk that did not catch up has no output."""
        pieces = {ch.seq.rid: ch for ch in plan.chunks}
        out: list[tuple[Seq, int, int]] = []
        for s in self.running.values():
            ch = pieces.get(s.rid)
            if ch is not None:
                out.append((s, 0 if ch.decode else ch.tokens,
                            1 if s.last_emit == plan.step else 0))
            elif s.dec:
                out.append((s, 0, 1))
        return tuple(out)

    def _pop_finished(self, k: int, done: list[Seq]) -> None:
        """Move the decoders that emit their last token at step `k` (or before) to `done`."""
        fin = self._finish
        found = False
        while fin and fin[0][0] <= k:
            fk, _, s = heapq.heappop(fin)
            if s.dec and s.finish_k == fk:
                self._dec_remove(s)
                done.append(s)
                found = True
        if found:
            done.sort(key=_pos)

    def _remove(self, done: list[Seq]) -> None:
        running = self.running
        pre = self._pre
        for s in done:
            self.free_blocks += s.blocks
            s.blocks = 0
            del running[s.rid]
            pre.pop(s.rid, None)

    def _scheduled_view(self, plan: StepPlan) -> tuple[tuple[int, int, int], ...]:
        """(request id, tokens, computed before) of the step, for observers."""
        k = plan.step
        pieces = {ch.seq.rid: ch for ch in plan.chunks}
        out = []
        for s in self.running.values():
            if s.dec:
                out.append((s.rid, 1, s.computed + k - s.base_k))
            elif s.rid in pieces:
                ch = pieces[s.rid]
                out.append((s.rid, ch.tokens, ch.computed))
        return tuple(out)


def _pos(s: Seq) -> int:
    return s.pos

