"""The inference engine: one scheduler thread, continuous batching over slots of one KV cache.

A request is a prompt (token ids) plus how to sample and when to stop. The scheduler thread owns
the model and the cache; nothing else touches them. Each loop iteration:

1. admits waiting requests into free slots: their prompts are prefilled into the slots' cache rows,
   several in one forward (the rows start empty, so attention is a plain causal forward; shorter
   prompts are right-padded), and each first token is sampled from its prompt's last logits;
2. drops cancelled sequences (a client went away);
3. decodes every active sequence together: one token each, one forward for the whole batch;
4. turns each new token into text (TextStream), checks stop tokens, stop strings and max_tokens,
   and retires finished sequences, whose slot is free for the next iteration.

So requests join and leave the running batch between any two decode steps (continuous batching);
nobody waits for the longest sequence of a "batch".

Slots are kept compacted: active sequences live in cache rows 0..n-1. When the sequence in row i
finishes, the sequence in the last row moves into row i (a copy of its filled keys/values, ~n_layer
small copies). That way a step always runs rows 0..n-1: no wasted compute on idle rows in eager
mode, and a short list of static shapes for CUDA graphs (decode.py).

Overlap (`overlap=True`): the decoder's step feeds itself its next inputs on the device (greedy ids,
or the sampled ids via `feed`), so while nothing changes (no row joins, leaves or could hit
max_tokens) the engine launches step t+1 *before* it reads step t's tokens, and the host's work for
step t (copying ids back, text, stop checks, delivery) runs while the GPU computes step t+1. A row
that stops at step t (stop token or string) has one step t+1 token computed for nothing, which is
dropped: results are matched to sequences, not to rows, and the row is freed as usual.

Several steps per launch (`decode_steps`, 4 with CUDA graphs): while every row decodes greedily and
has room for them, one launch runs k steps on the device (decode.py) and the host reads k tokens
per row at once. At batch 1 on a GPU a step takes ~0.3 ms, about what the host needs to launch,
read, detokenize and deliver one step, so one step per launch leaves the GPU waiting on the host
now and then; k steps per launch pay the host's work once per k tokens. Tokens then reach clients
in groups of k; a row that stops early has at most 2k - 1 extra tokens computed and dropped.

Results go back to the asyncio side through each request's queue, batched per iteration with one
`loop.call_soon_threadsafe` per event loop (events.py): the event loop never waits on the model.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque

import torch

from .copying import CopyChecker
from .decode import EagerDecoder, GraphDecoder
from .events import Done, Failed, Outbox, Request, Token
from .grammar import ACTION, ANSWER, FREE, STEP, ProtocolGrammar
from .sampling import sample
from .textstream import TextStream

log = logging.getLogger("model.engine")


class QueueFull(RuntimeError):
    """Too many requests are waiting for a slot (HTTP 429)."""


class EngineClosed(RuntimeError):
    """The engine is shutting down and takes no new requests (HTTP 503)."""


class _Seq:
    """A request in a slot."""
    __slots__ = ("req", "text", "gen", "last", "n_out", "done", "state", "copy", "segment")

    def __init__(self, req: Request, device: torch.device, tok, state: int, copy_rules: bool):
        self.req, self.last, self.n_out, self.done = req, -1, 0, False
        self.state = state  # grammar state after `last` (FREE: unconstrained)
        self.copy = req.copy if copy_rules and state != FREE else None  # copying.CopyRule
        self.segment = b""  # the text since the last special token (what `copy` checks)
        self.text = TextStream(tok, req.stop, req.specials_as_text)
        self.gen = req.sampling.generator(device)


class Engine:
    def __init__(self, model, tok, max_batch: int = 8, max_queue: int = 64,
                 cuda_graphs: bool | None = None, step_delay: float = 0.0, overlap: bool = True,
                 prefill_tokens: int = 2048, decode_steps: int | None = None, grammar: bool = True,
                 copy_rules: bool = True):
        self.model, self.tok = model.eval(), tok
        self.device = next(model.parameters()).device
        self.block_size = model.config.block_size
        self.max_batch, self.max_queue, self.step_delay = max_batch, max_queue, step_delay
        self.cache = model.new_kv_cache(max_batch)
        # a model's vocab may be padded (e.g. to a multiple of 64) past the tokenizer's: never
        # sample an id that the tokenizer cannot decode
        self.n_vocab = min(tok.vocab_size, model.config.vocab_size)
        # requests with `constrained` set (chat) follow the protocol's grammar (grammar.py)
        self.grammar = (ProtocolGrammar(tok.special_tokens, self.n_vocab, model.config.vocab_size, self.device)
                        if grammar and ProtocolGrammar.fits(tok.special_tokens) else None)
        use_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        # greedy steps per launch (see the docstring); on a CPU the host IS the device: nothing to hide
        self.decode_steps = decode_steps or (4 if use_graphs else 1)
        if self.decode_steps < 1:
            raise ValueError(f"decode_steps must be >= 1, got {decode_steps}")
        self.decoder = (GraphDecoder(model, self.cache, n_vocab=self.n_vocab, multi_steps=self.decode_steps,
                                     grammar=self.grammar)
                        if use_graphs else EagerDecoder(model, self.cache, n_vocab=self.n_vocab, grammar=self.grammar))
        self.overlap = overlap
        self.copy_rules = copy_rules and self.grammar is not None  # a request's `copy` (copying.py) is checked
        self.copy_checker = CopyChecker(tok)
        self.prefill_tokens = prefill_tokens  # padded prompt tokens per prefill forward (at least one prompt)
        self._pending: _Step | None = None  # a launched step whose tokens are not processed yet
        self._dirty = True  # rows changed since the last step: the next one takes its inputs from the host
        # at most two launches are unread (one in flight, one ahead): two pinned landing buffers
        pin = self.device.type == "cuda"
        self._landing = [torch.zeros(self.decode_steps * max_batch, dtype=torch.long, pin_memory=pin)
                         for _ in range(2)]
        self._turn = 0
        self.slots: list[_Seq] = []
        self.waiting: deque[Request] = deque()
        self.cv = threading.Condition()
        self.closing = False
        self.stats = dict(requests=0, completed=0, cancelled=0, failed=0, tokens=0, steps=0, peak_active=0,
                          ran_ahead=0)
        self.outbox = Outbox()
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)

    # ------------------------------------------------------------------ called from other threads
    def start(self, warmup: bool = False) -> "Engine":
        if warmup and isinstance(self.decoder, GraphDecoder):
            with torch.no_grad():
                self.decoder.warmup()
        self.thread.start()
        return self

    def fit_max_tokens(self, prompt_len: int, max_tokens: int | None) -> int:
        """The completion budget: the request's max_tokens clamped so prompt + completion fits the
        context window. Raises ValueError when the prompt alone leaves no room."""
        room = self.block_size - prompt_len
        if prompt_len < 1:
            raise ValueError("the prompt is empty")
        if room < 1:
            raise ValueError(f"the prompt has {prompt_len} tokens; the context window is {self.block_size} "
                             f"tokens and must leave room for at least one new token")
        return room if max_tokens is None else min(max_tokens, room)

    def submit(self, req: Request) -> Request:
        if req.max_tokens < 1 or len(req.prompt) + req.max_tokens > self.block_size or not req.prompt:
            raise ValueError("prompt + max_tokens must fit the context window (use fit_max_tokens)")
        with self.cv:
            if self.closing:
                raise EngineClosed("the server is shutting down")
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are already waiting (max_queue={self.max_queue})")
            self.waiting.append(req)
            self.stats["requests"] += 1
            self.cv.notify()
        return req

    def cancel(self, req: Request) -> None:
        """Stop generating for req at the next step (the client went away)."""
        req.cancelled = True
        with self.cv:
            self.cv.notify()

    def health(self) -> dict:
        with self.cv:
            active, waiting = len(self.slots), len(self.waiting)
        return {"slots": {"total": self.max_batch, "active": active, "free": self.max_batch - active},
                "queue": {"waiting": waiting, "max": self.max_queue}, "stats": dict(self.stats),
                "draining": self.closing}

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Take no new requests; finish (drain=True) or cancel the ones in flight; join the thread."""
        with self.cv:
            self.closing = True
            if not drain:
                for r in [*self.waiting, *(s.req for s in self.slots)]:
                    r.cancelled = True
            self.cv.notify()
        if self.thread.is_alive():
            self.thread.join(timeout)

    # ------------------------------------------------------------------ the scheduler thread
    def _run(self) -> None:
        with torch.no_grad():
            while True:
                with self.cv:
                    while not self.slots and not self.waiting and not self.closing:
                        self.cv.wait()
                    if self.closing and not self.slots and not self.waiting:
                        return
                    admit = []
                    while self.waiting and len(self.slots) + len(admit) < self.max_batch:
                        admit.append(self.waiting.popleft())
                try:
                    self._iteration(admit)
                except Exception as e:  # a bug or a device error: fail the batch, keep serving
                    log.error("engine step failed:\n%s", traceback.format_exc())
                    for s in self.slots:
                        self.outbox.emit(s.req, Failed(f"engine error: {e}"))
                    self.stats["failed"] += len(self.slots)
                    self.slots.clear()
                    self.cache.reset()
                    self._pending, self._dirty = None, True
                self.outbox.flush()
                if self.step_delay and self.slots:
                    time.sleep(self.step_delay)

    def _iteration(self, admit: list[Request]) -> None:
        if self._pending is not None and (admit or any(s.req.cancelled for s in self.slots)):
            self._process(self._pending)  # rows are about to change: settle the step in flight first
            self._pending = None
        live = []  # one look at `cancelled` per request: another thread may set it meanwhile
        for req in admit:
            if req.cancelled:
                self.stats["cancelled"] += 1
                self.outbox.emit(req, Done("cancelled", len(req.prompt), 0))
            else:
                live.append(req)
        for group in self._prefill_groups(live):
            first = len(self.slots)
            try:
                tokens = self._prefill(group)
            except Exception as e:  # e.g. a device error on these prompts: fail them, keep the others
                log.error("prefill failed:\n%s", traceback.format_exc())
                del self.slots[first:]
                self.cache.reset(slice(first, first + len(group)))
                self.stats["failed"] += len(group)
                for req in group:
                    self.outbox.emit(req, Failed(f"prefill failed: {e}"))
                continue
            done = [self._advance(seq, token) for seq, token in zip(self.slots[first:], tokens)]
            self._retire([first + i for i, d in enumerate(done) if d])
        finished = [i for i, s in enumerate(self.slots) if s.req.cancelled and not s.done]
        for i in finished:
            seq = self.slots[i]
            self.stats["cancelled"] += 1
            self.outbox.emit(seq.req, Done("cancelled", len(seq.req.prompt), seq.n_out))
        self._retire(finished)
        if not self.slots:
            return
        self.stats["peak_active"] = max(self.stats["peak_active"], len(self.slots))
        if self._pending is None:
            self._pending = self._launch(ahead=0)
        step, self._pending = self._pending, None
        if self._can_run_ahead(step.steps):
            self._pending = self._launch(ahead=step.steps)
            self.stats["ran_ahead"] += 1
        self._process(step)

    def _launch(self, ahead: int) -> _Step:
        """Start decoding all active rows, `ahead` steps past their last read token; nothing here
        waits for the device."""
        seqs = list(self.slots)
        k = self._steps_per_launch(ahead)
        feed = self.overlap and not self._dirty  # the device already holds each row's last token
        logits, ids = self.decoder.step(None if feed else [s.last for s in seqs], steps=k,
                                        states=None if feed else [s.state for s in seqs])  # ids (k, n)
        self._dirty = False
        if not all(s.req.sampling.greedy for s in seqs):  # (then k == 1)
            if self.grammar is not None:
                logits = self.grammar.mask(logits, self.decoder.last_states)
            ids = sample(logits[:, :self.n_vocab], [s.req.sampling for s in seqs], [s.gen for s in seqs])
            self.decoder.feed(ids)
            ids = ids[None]
        checked = self._copy_checked(seqs, logits, ids[-1])
        if checked is not None:
            self.decoder.feed(checked)
            ids = checked[None]
        self.stats["steps"] += k
        self._turn ^= 1
        return _Step(seqs, ids, self._landing[self._turn])

    def _copy_checked(self, seqs: list[_Seq], logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor | None:
        """Rows in an action or an answer whose pick breaks their copy rule (copying.py) take the
        most likely token that keeps it -> the corrected ids (n,), or None when every pick stands."""
        rows = [i for i, s in enumerate(seqs) if s.copy is not None and s.state in (ACTION, ANSWER)]
        if not rows:
            return None
        picks, changed = ids.tolist(), False
        for i in rows:
            seq = seqs[i]
            if self.copy_checker.keeps(seq.copy, seq.segment, seq.state == ACTION, picks[i]):
                continue
            scores = self.grammar.mask(logits[i:i + 1, :self.n_vocab], torch.tensor([seq.state], device=self.device))
            better = self.copy_checker.best(seq.copy, seq.segment, seq.state == ACTION, scores[0])
            if better is not None:
                picks[i], changed = better, True
        return torch.tensor(picks, device=ids.device) if changed else None

    def _copy_rows(self) -> bool:
        """Any row whose picks the host must check before the next step (so: one step per launch)."""
        return any(s.copy is not None and s.state != FREE for s in self.slots)

    def _waiting_for_slot(self) -> bool:
        return bool(self.waiting) and len(self.slots) < self.max_batch

    def _steps_per_launch(self, ahead: int) -> int:
        """decode_steps while every row is greedy and has room for them after `ahead` unread steps
        and nobody waits for a free slot (it would wait k steps to join); else 1."""
        k = self.decode_steps
        if k == 1 or self._waiting_for_slot() or self._copy_rows():
            return 1
        return k if all(s.req.sampling.greedy and s.n_out + ahead + k <= s.req.max_tokens for s in self.slots) else 1

    def _can_run_ahead(self, ahead: int) -> bool:
        """Launch the next step before reading the `ahead` launched ones? Only while no row can join
        (a waiting request and a free slot) and every row has room for one more token."""
        if not self.overlap or self._dirty or self._waiting_for_slot() or self._copy_rows():
            return False
        return all(s.n_out + ahead + 1 <= s.req.max_tokens for s in self.slots)

    def _process(self, step: _Step) -> None:
        """The host's half of a step: read its tokens, stream them, retire finished sequences."""
        done = False
        for tokens in step.tokens():  # step by step, row by row
            for seq, token in zip(step.seqs, tokens):
                if not seq.done and self._advance(seq, token):  # a done seq's tokens were computed for nothing
                    seq.done = done = True
        if done:
            self._retire([i for i, s in enumerate(self.slots) if s.done])

    def _prefill_groups(self, reqs: list[Request]) -> list[list[Request]]:
        """Admitted requests in prefill batches of at most prefill_tokens padded tokens (a batch
        computes rows x longest prompt positions). One forward per batch
        instead of one per prompt: on a GPU a prefill is mostly kernel launches, whatever its rows."""
        groups: list[list[Request]] = []
        for req in sorted(reqs, key=lambda r: len(r.prompt)):  # similar lengths together: less padding
            if groups and (len(groups[-1]) + 1) * len(req.prompt) <= self.prefill_tokens:
                groups[-1].append(req)
            else:
                groups.append([req])
        return groups

    def _prefill(self, reqs: list[Request]) -> list[int]:
        """Put reqs in the next free rows, prefill their prompts in one forward -> their first tokens
        (GPT.prefill: prompts right-padded to the longest, each row's length set to its own prompt's)."""
        first = len(self.slots)
        rows = slice(first, first + len(reqs))
        self._dirty = True  # new rows: the next step takes its inputs from the host
        self.cache.reset(rows)
        seqs = [_Seq(req, self.device, self.tok, STEP if self.grammar and req.constrained else FREE, self.copy_rules)
                for req in reqs]
        self.slots.extend(seqs)
        last = self.model.prefill([req.prompt for req in reqs], self.cache, first)  # (b, V)
        if self.grammar is not None:
            last = self.grammar.mask(last, torch.tensor([s.state for s in seqs], device=self.device))
        return sample(last[:, :self.n_vocab], [req.sampling for req in reqs], [seq.gen for seq in seqs]).tolist()

    def _advance(self, seq: _Seq, token: int) -> bool:
        """Account for one new token of seq; emit its text; True when seq is finished."""
        req = seq.req
        seq.last, seq.n_out = token, seq.n_out + 1
        if seq.state != FREE:
            seq.state = self.grammar.advance(seq.state, token)
        if seq.copy is not None:
            seq.segment = self.copy_checker.extend(seq.segment, token)
        self.stats["tokens"] += 1
        if token in req.stop_ids:
            text, special, reason = seq.text.close(), (None if req.specials_as_text else token), "stop"
        else:
            text, special, stopped = seq.text.push(token)
            reason = "stop" if stopped else ("length" if seq.n_out >= req.max_tokens else None)
            if reason == "length":
                text += seq.text.close()
        if text or special is not None:
            self.outbox.emit(req, Token(text, special))
        if reason is not None:
            self.stats["completed"] += 1
            self.outbox.emit(req, Done(reason, len(req.prompt), seq.n_out))
        return reason is not None

    def _retire(self, indices: list[int]) -> None:
        """Free the slots at `indices`, moving the last active rows into the holes."""
        for i in sorted(indices, reverse=True):
            self.slots[i].done, self._dirty = True, True
            last = len(self.slots) - 1
            if i != last:
                self._move_row(last, i)
                self.slots[i] = self.slots[last]
            self.slots.pop()
            self.cache.reset(slice(last, last + 1))

    def _move_row(self, src: int, dst: int) -> None:
        n = int(self.cache.lengths[src])
        self.cache.k[:, dst, :, :n].copy_(self.cache.k[:, src, :, :n])
        self.cache.v[:, dst, :, :n].copy_(self.cache.v[:, src, :, :n])
        self.cache.lengths[dst] = n


class _Step:
    """A launch of `steps` decode steps: its sequences (row i = seqs[i] at launch) and its ids
    (steps, rows) on the way to the host."""
    __slots__ = ("seqs", "host", "event", "steps")

    def __init__(self, seqs: list[_Seq], ids: torch.Tensor, landing: torch.Tensor):
        self.seqs, self.event, self.steps = seqs, None, ids.size(0)
        self.host = landing[:ids.numel()].view(ids.shape)
        if ids.is_cuda:  # async copy into pinned memory; the event says when it has landed
            self.host.copy_(ids, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host.copy_(ids)

    def tokens(self) -> list[list[int]]:
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()

