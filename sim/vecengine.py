"""The engine model with the running batch held in numpy arrays (the simulator's default).

`VectorEngineModel` makes the same decisions as the scalar `EngineModel` (the reference, used with
``step_by_step=True``) but keeps the running requests' counters — prompt + generated tokens,
computed tokens, KV blocks, client, emission ranges — in arrays in running-list order, so a step
costs a fixed number of numpy operations instead of a Python loop over up to `max_num_seqs`
requests. Rare situations fall back to the scalar code on synchronised `Seq` objects: a step in
which some running request lacks KV blocks (preemption) is planned by `EngineModel.plan` itself.
Admissions are per request (a few per step) and finishes update a Python list once per step that
has one. Three step kinds: decode-only (`_run`, also for runs of k > 1 identical steps — the fast
path described in `exfairs.sim.engine`), decodes plus a few prefill chunks whose indices are kept
in `_pre` (`_mixed_step`: vector work for the batch, Python for the chunks), and anything else —
the budget cut the running walk short, or a preemption happened (`_general_step`). Tests check that
this model and the scalar one give identical records (tests/sim/test_invariants.py,
tests/sim/test_engine.py).
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import numpy.typing as npt

from exfairs.calibration.costmodel import CostModel
from exfairs.sim.config import EngineConfig
from exfairs.sim.engine import (
    EngineModel,
    Outcome,
    Plan,
    Seq,
    StepInfo,
    StepObserver,
    VictimChooser,
    WaitingQueue,
)

IntArray = npt.NDArray[np.int64]


class VectorEngineModel(EngineModel):
    """`EngineModel` with a vectorised running batch (same results, fewer Python steps)."""

    def __init__(self, config: EngineConfig, cost: CostModel, waiting: WaitingQueue,
                 victim: VictimChooser, n_clients: int,
                 observer: StepObserver | None = None) -> None:
        super().__init__(config, cost, waiting, victim, observer)
        c = cost.coefficients
        self._coef = (c.fixed_ms, c.decode_fixed_ms, c.decode_seq_ms, c.decode_ctx_ms, c.floor_ms)
        cap = config.max_num_seqs
        self._n_clients = n_clients
        self._b = 0  # running requests; their state is in the first _b columns
        # One 2-D array so that removing finished requests is one fancy-indexing operation.
        self._state = np.zeros((9, cap), dtype=np.int64)
        st = self._state
        self._tok = st[0]  # prompt + generated
        self._out = st[1]
        self._gen = st[2]
        self._comp = st[3]  # computed tokens
        self._blk = st[4]  # KV blocks held
        self._cli = st[5]  # client index
        self._last = st[6]  # step index of the last emission
        self._segst = st[7]  # start of the open emission range
        self._n = st[8]  # tokens scheduled in the planned step
        # Running requests not decoding (prefill or recompute under way), by index: usually few.
        self._pre: list[int] = []

    # -- synchronisation with the Seq objects -----------------------------------------------------
    def _sync_out(self) -> None:
        """Write the array state back into the running `Seq` objects."""
        b = self._b
        gen = self._gen[:b].tolist()
        comp = self._comp[:b].tolist()
        blk = self._blk[:b].tolist()
        last = self._last[:b].tolist()
        segst = self._segst[:b].tolist()
        for i, s in enumerate(self.running):
            s.gen, s.computed, s.blocks, s.last_emit, s.seg_start = (
                gen[i], comp[i], blk[i], last[i], segst[i])
            s.sched_n = 0

    def _load(self) -> None:
        """Rebuild the arrays from the running `Seq` objects (after a scalar plan)."""
        run = self.running
        b = len(run)
        self._b = b
        self._tok[:b] = [s.prompt + s.gen for s in run]
        self._out[:b] = [s.out for s in run]
        self._gen[:b] = [s.gen for s in run]
        self._comp[:b] = [s.computed for s in run]
        self._blk[:b] = [s.blocks for s in run]
        self._cli[:b] = [s.client for s in run]
        self._last[:b] = [s.last_emit for s in run]
        self._segst[:b] = [s.seg_start for s in run]
        self._n[:b] = [s.sched_n for s in run]
        self._pre = [i for i, s in enumerate(run)
                     if s.gen == 0 or s.prompt + s.gen - s.computed != 1]

    def _append(self, s: Seq, n: int) -> None:
        i = self._b
        self._tok[i] = s.prompt + s.gen
        self._out[i] = s.out
        self._gen[i] = s.gen
        self._comp[i] = s.computed
        self._blk[i] = s.blocks
        self._cli[i] = s.client
        self._last[i] = s.last_emit
        self._segst[i] = s.seg_start
        self._n[i] = n
        self._b = i + 1
        self.running.append(s)

    # -- scheduling -------------------------------------------------------------------------------
    def plan(self, now_s: float) -> Plan:
        cfg = self.cfg
        bs = self._bs
        b = self._b
        waiting = self.waiting
        threshold = cfg.long_prefill_token_threshold
        if b + len(waiting) <= 1:
            threshold = 0
        budget = cfg.max_num_batched_tokens
        general = False
        if b:
            n = self._n[:b]
            comp = self._comp[:b]
            if not self._pre:
                # Every running request decodes: one token each (b ≤ max_num_seqs ≤ budget),
                # a new block where the cache is block-aligned.
                n[:] = 1
                need = comp % bs == 0
                total = b
            else:
                np.subtract(self._tok[:b], comp, out=n)
                if threshold:
                    np.minimum(n, threshold, out=n)
                total = int(n.sum())
                if total > budget:
                    # The walk stops at the request that exhausts the budget (partial chunk).
                    cum = np.cumsum(n)
                    j = int(np.searchsorted(cum, budget, side="left"))
                    n[j] = budget - (int(cum[j - 1]) if j else 0)
                    n[j + 1:] = 0
                    total = budget
                    general = True
                need = (comp + n + (bs - 1)) // bs - self._blk[:b]
            need_total = int(np.count_nonzero(need)) if need.dtype == np.bool_ else int(need.sum())
            if need_total > self.free_blocks:
                # Some request lacks KV blocks: preemption. The scalar model plans this step.
                self._sync_out()
                plan = EngineModel.plan(self, now_s)
                self._load()
                plan.general = True
                return plan
            if need_total:
                self._blk[:b] += need
                self.free_blocks -= need_total
            budget -= total
        plan = Plan()
        plan.general = general
        max_seqs = cfg.max_num_seqs
        while True:
            if len(waiting) == 0:
                plan.stop = "empty"
                break
            if budget <= 0:
                plan.stop = "budget"
                break
            if self._b >= max_seqs:
                plan.stop = "seqs"
                break
            s = waiting.peek(now_s)
            k = s.prompt + s.gen - s.computed
            if 0 < threshold < k:
                k = threshold
            if k > budget:
                if not cfg.enable_chunked_prefill:
                    plan.stop = "chunk"
                    break
                k = budget
            need_s = (s.computed + k + bs - 1) // bs - s.blocks
            if need_s > self.free_blocks:
                plan.stop = "kv"
                break
            waiting.pop(now_s)
            self.free_blocks -= need_s
            s.blocks += need_s
            self._pre.append(self._b)  # admitted requests start with a prefill
            self._append(s, k)
            plan.admitted.append(s)
            budget -= k
        plan.busy = self._b > 0
        return plan

    # -- execution --------------------------------------------------------------------------------
    def execute(self, plan: Plan, now_s: float, horizon_s: float, fast: bool) -> Outcome:
        if plan.general:
            return self._general_step(plan, now_s)
        if self._pre:
            out = self._mixed_step(plan, now_s)
            # When the prefills are done and nothing can happen at the step's end (no finish,
            # no arrival, sample or deadline by then, and an admission verdict that still holds),
            # the decode steps that follow run in the same event.
            if (fast and not self._pre and self._b and not out.finished and out.end_s < horizon_s
                    and (plan.stop in ("empty", "seqs")
                         or (plan.stop == "kv" and self.waiting.static))
                    and self._alloc_decode_step()):
                nxt = self._decode(out.end_s, horizon_s, plan.stop)
                nxt.before = out
                return nxt
            return out
        if not fast:
            return self._decode(now_s, math.inf, "empty")
        return self._decode(now_s, horizon_s, plan.stop)

    def _alloc_decode_step(self) -> bool:
        """Allocate the blocks of a decode step of the whole batch, as `plan` would; False (and
        nothing changed) when they are not free."""
        b = self._b
        need = self._comp[:b] % self._bs == 0
        total = int(np.count_nonzero(need))
        if total > self.free_blocks:
            return False
        if total:
            self._blk[:b] += need
            self.free_blocks -= total
        self._n[:b] = 1
        return True

    def _decode(self, now_s: float, horizon_s: float, stop: str) -> Outcome:
        """Decode-only step(s) from `now_s` (blocks of the first step already allocated)."""
        k, ends = 1, list[float]()
        if stop not in ("kv", "chunk") or self.waiting.static:
            k, ends = self._run_length(now_s, horizon_s)
        if k <= 1:
            b = self._b
            c = int(self._comp[:b].sum()) + b
            ends = [now_s + self.cost.step_ms(0, 0, b, c) / 1000.0]
            k = 1
        return self._run(now_s, k, ends)

    def _mixed_step(self, plan: Plan, now_s: float) -> Outcome:
        """One step of decodes plus a few prefill chunks (indices `_pre`); every running request
        is scheduled (the budget did not run out)."""
        b = self._b
        pre = self._pre
        n = self._n[:b]
        tok = self._tok[:b]
        comp = self._comp[:b]
        gen = self._gen[:b]
        last = self._last[:b]
        cli = self._cli[:b]
        pn = n[pre].tolist()
        pc = comp[pre].tolist()
        pt = tok[pre].tolist()
        pg = gen[pre].tolist()
        pl = last[pre].tolist()
        pcl = cli[pre].tolist()
        p_tok = 0
        p_attn = 0
        pre_c = 0
        for x, c in zip(pn, pc, strict=True):
            p_tok += x
            p_attn += x * (c + x)
            pre_c += c
        n_dec = b - len(pre)
        d_ctx = int(comp.sum()) - pre_c + n_dec
        end = now_s + self.cost.step_ms(p_tok, p_attn, n_dec, d_ctx) / 1000.0
        kstep = len(self.step_end_s)
        self.step_end_s.append(end)
        out = Outcome(end, 1)
        observer = self.observer
        if observer is not None:
            scheduled = tuple((s.rid, int(x), int(c)) for s, x, c in
                              zip(self.running, n.tolist(), comp.tolist(), strict=True))
            blocks_in_use = self.cfg.num_gpu_blocks - self.free_blocks
        comp += n
        gen += 1
        tok += 1
        dec = np.bincount(cli, minlength=self._n_clients).tolist()
        brk = last != kstep - 1
        service = out.service
        still: list[int] = []
        run = self.running
        for j, i in enumerate(pre):
            c = pcl[j]
            acc = service.get(c)
            if acc is None:
                acc = service[c] = [0, 0]
            acc[0] += pn[j]
            if pc[j] + pn[j] == pt[j]:  # caught up: emits (brk handles its emission range)
                if pg[j] == 0:
                    out.first_tokens.append(run[i])
            else:  # prefill continues: undo the emission
                gen[i] -= 1
                tok[i] -= 1
                brk[i] = False
                dec[c] -= 1
                if pg[j] == 0 or pt[j] - pc[j] - pn[j] != 1:
                    still.append(i)
                # else: one token left after a recompute: from now on a decode, as the scalar
                # model classifies it (n == 1 on a caught-up cache, after the first token).
        if brk.any():
            self._break_segments(np.flatnonzero(brk), kstep)
        last[:] = kstep
        for j, i in enumerate(pre):
            if pc[j] + pn[j] != pt[j]:
                last[i] = pl[j]
        self._pre = still
        for c, d in enumerate(dec):
            if d:
                acc = service.get(c)
                if acc is None:
                    service[c] = [0, d]
                else:
                    acc[1] = d
        done = gen >= self._out[:b]
        if done.any():
            self._finish(done, out)
        if observer is not None:
            observer(StepInfo(now_s, end, 1, scheduled, b, blocks_in_use, (),
                              tuple(s.rid for s in plan.admitted),
                              tuple(s.rid for s in out.finished)))
        return out

    def _general_step(self, plan: Plan, now_s: float) -> Outcome:
        """One step in full generality (budget cut the walk short, or after preemptions)."""
        b = self._b
        n = self._n[:b]
        tok = self._tok[:b]
        comp = self._comp[:b]
        gen = self._gen[:b]
        # Decode sequences: one token on top of a caught-up cache, after the first token.
        is_dec = (n == 1) & (tok - comp == 1) & (gen > 0)
        n_dec = int(np.count_nonzero(is_dec))
        d_ctx = int(np.dot(is_dec, comp)) + n_dec
        p_tok = int(n.sum()) - n_dec
        p_attn = int(np.dot(n, comp + n)) - d_ctx if p_tok else 0
        end = now_s + self.cost.step_ms(p_tok, p_attn, n_dec, d_ctx) / 1000.0
        kstep = len(self.step_end_s)
        self.step_end_s.append(end)
        out = Outcome(end, 1)
        observer = self.observer
        if observer is not None:
            scheduled = tuple((s.rid, int(x), int(c)) for s, x, c in
                              zip(self.running, n.tolist(), comp.tolist(), strict=True) if x)
            blocks_in_use = self.cfg.num_gpu_blocks - self.free_blocks
        comp += n
        emit = (n > 0) & (comp == tok)
        gen += emit
        tok += emit
        cli = self._cli[:b]
        nc = self._n_clients
        decode = np.bincount(cli, weights=emit, minlength=nc)
        prefill = np.bincount(cli, weights=n - is_dec, minlength=nc)
        service = out.service
        for c in np.flatnonzero(prefill + decode).tolist():
            service[c] = [int(prefill[c]), int(decode[c])]
        last = self._last[:b]
        brk = emit & (last != kstep - 1)
        if brk.any():
            self._break_segments(np.flatnonzero(brk), kstep)
        last[emit] = kstep
        run = self.running
        firsts = np.flatnonzero(emit & (gen == 1))
        if firsts.shape[0]:
            out.first_tokens = [run[i] for i in firsts.tolist()]
        done = gen >= self._out[:b]
        self._pre = []
        if done.any():
            self._finish(done, out)
        b = self._b
        self._n[:b] = 0
        self._pre = np.flatnonzero((self._tok[:b] - self._comp[:b] != 1)
                                   | (self._gen[:b] == 0)).tolist()
        if observer is not None:
            observer(StepInfo(now_s, end, 1, scheduled, len(run) + len(out.finished),
                              blocks_in_use, tuple(s.rid for s in plan.preempted),
                              tuple(s.rid for s in plan.admitted),
                              tuple(s.rid for s in out.finished)))
        return out

    def _break_segments(self, idx: IntArray, kstep: int) -> None:
        """Requests in `idx` emit at `kstep` after a gap: close their previous emission range."""
        last = self._last
        segst = self._segst
        run = self.running
        for i in idx.tolist():
            end = int(last[i])
            if end >= 0:
                s = run[i]
                s.segs.append(int(segst[i]))
                s.segs.append(end + 1)
            segst[i] = kstep

    def _finish(self, done: npt.NDArray[np.bool_], out: Outcome) -> None:
        b = self._b
        idx = np.flatnonzero(done).tolist()
        run = self.running
        finished = out.finished
        st = self._state
        cols = st[:, idx].tolist()  # rows: tok, out, gen, comp, blk, cli, last, segst, n
        gen, comp, last, segst = cols[2], cols[3], cols[6], cols[7]
        for j, i in enumerate(idx):
            s = run[i]
            s.gen, s.computed, s.last_emit, s.seg_start = gen[j], comp[j], last[j], segst[j]
            s.blocks = 0
            s.sched_n = 0
            finished.append(s)
        self.free_blocks += sum(cols[4])
        for i in reversed(idx):
            del run[i]
        m = b - len(idx)
        if idx[0] < m:  # close the gaps, keeping the running order
            keep = np.flatnonzero(~done)
            st[:, :m] = st[:, keep]
            if self._pre:
                self._pre = [i - bisect.bisect_left(idx, i) for i in self._pre]
        self._b = m

    def _run_length(self, now_s: float, horizon_s: float) -> tuple[int, list[float]]:
        b = self._b
        bs = self._bs
        comp = self._comp[:b]
        k = int((self._out[:b] - self._gen[:b]).min())
        if k <= 1:
            return 1, []
        fixed, dfix, dseq, dctx, floor = self._coef
        c0 = int(comp.sum()) + b
        if now_s + max(floor, fixed + (dfix + dseq * b + dctx * c0)) / 1000.0 >= horizon_s:
            return 1, []  # the next decision point comes after this step anyway
        # KV blocks: after step 0 request i has c_i + 1 tokens cached and needs a new block at the
        # later steps u with (c_i + u) % bs == 0, i.e. first at u = 1 + ((-(c_i+1)) % bs), then
        # every bs steps; with F free blocks the (F+1)-th such request cannot be served.
        q, r = divmod(self.free_blocks, b)
        if 1 + q * bs < k:
            j0 = (-(comp + 1)) % bs
            k = min(k, 1 + int(np.partition(j0, r)[r]) + q * bs)
            if k <= 1:
                return 1, []
        ctx = float(c0) + b * np.arange(k, dtype=np.float64)
        # Same operation order as CostModel.step_ms with no prefill: identical floats.
        dur_ms = np.maximum(floor, fixed + (dfix + dseq * b + dctx * ctx))
        seq = np.empty(k + 1)
        seq[0] = now_s
        seq[1:] = dur_ms / 1000.0
        ends = np.cumsum(seq)[1:]  # sequential sums: the step-by-step clock, bit for bit
        if math.isfinite(horizon_s):
            j = int(np.searchsorted(ends, horizon_s, side="left"))
            if j + 1 < k:
                k = j + 1
                ends = ends[:k]
        return k, ends.tolist()

    def _run(self, now_s: float, k: int, ends: list[float]) -> Outcome:
        """`k` decode-only steps of the whole running batch, ending at `ends`."""
        b = self._b
        bs = self._bs
        k0 = len(self.step_end_s)
        self.step_end_s.extend(ends)
        out = Outcome(ends[-1], k)
        observer = self.observer
        comp = self._comp[:b]
        if observer is not None:
            scheduled = tuple((s.rid, 1, c) for s, c in
                              zip(self.running, comp.tolist(), strict=True))
        comp += k
        self._gen[:b] += k
        self._tok[:b] += k
        blk = self._blk[:b]
        # Step 0's blocks were allocated by plan(); the later steps' here.
        nb = (comp + (bs - 1)) // bs
        self.free_blocks -= int(nb.sum()) - int(blk.sum())
        blk[:] = nb
        last = self._last[:b]
        brk = last != k0 - 1
        if brk.any():
            self._break_segments(np.flatnonzero(brk), k0)
        last[:] = k0 + k - 1
        dec = np.bincount(self._cli[:b], minlength=self._n_clients).tolist()
        service = out.service
        for c, d in enumerate(dec):
            if d:
                service[c] = [0, d * k]
        if observer is not None:
            blocks_in_use = self.cfg.num_gpu_blocks - self.free_blocks
        done = self._gen[:b] >= self._out[:b]
        if done.any():
            self._finish(done, out)
        if observer is not None:
            observer(StepInfo(now_s, out.end_s, k, scheduled, b, blocks_in_use, (), (),
                              tuple(s.rid for s in out.finished)))
        return out
