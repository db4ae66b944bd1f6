"""lm-eval's ``HFLM`` made faster with the same scores: the LM head trimmed, each context run once.

:class:`TrimmedHFLM` is built on first access (``from lorp.evaluate.hflm import TrimmedHFLM``),
since importing lm-eval takes seconds; :func:`lorp.evaluate.zeroshot.zero_shot` uses it.
"""

from __future__ import annotations

import inspect
from typing import Any


def trimmed_hflm() -> type:
    """Build (once) :class:`TrimmedHFLM`, a subclass of lm-eval's ``HFLM``; lm-eval is imported only here."""
    global _TRIMMED_HFLM
    if _TRIMMED_HFLM is not None:
        return _TRIMMED_HFLM
    import torch
    import torch.nn.functional as F
    from lm_eval.models.huggingface import HFLM

    class TrimmedHFLM(HFLM):
        """lm-eval's ``HFLM`` that applies the LM head only at the positions lm-eval reads.

        lm-eval 0.4.13 (``lm_eval/models/huggingface.py``) right-pads the inputs of a
        batch with 0 to the longest, ``T`` tokens, calls :meth:`_model_call` for
        ``[batch, T, vocab]`` logits, and reads row ``i`` (``inplen_i`` real input
        tokens, ``contlen_i`` continuation tokens) at
        ``logits[ctx_len - contlen_i : ctx_len]`` with
        ``ctx_len = inplen_i + (logits.shape[1] - T)``. Logits of only the last
        ``T - s`` positions are therefore read at the same places, provided
        ``s <= inplen_i - contlen_i`` for every row; the model then runs the LM head
        (``hidden -> vocab``) on those positions only (transformers'
        ``logits_to_keep``), which skips most of its cost.

        :meth:`_loglikelihood_tokens` records, for each request, its input tokens
        (lm-eval's ``(context_enc + continuation_enc)[-(max_length + 1):][:-1]``) and
        the longest continuation length with those inputs; :meth:`_model_call` matches
        each padded row to its entries and calls the model with
        ``logits_to_keep = T - min_i(inplen_i - contlen_i)``. Every other step is
        lm-eval's own code. The plain full call is made when a row matches no recorded
        request (e.g. lm-eval's batch-size probe), when the model's ``forward`` has no
        ``logits_to_keep`` parameter, for seq2seq models, or with ``trim=False``.

        Shared contexts: the requests of one multiple-choice item share their context
        (lm-eval builds one request per answer choice), so with ``share_context`` the
        context runs once and each choice continues from its KV cache
        (:meth:`shared_context_loglikelihoods`). That path needs a KV-cache parameter
        in the model's ``forward`` (:meth:`cache_parameter`); a request lm-eval would truncate from the
        left (longer than the model's context) takes the trimmed path above.

        Restarted forwards: with ``forward`` (a callable ``(input_ids [B, T], logits_to_keep or None) ->
        logits``, e.g. :class:`lorp.evaluate.zeroshot_prefix.DensePrefixStates`' record or replay), every
        model call is made through it, with the same trimming; lm-eval's own ``HFLM`` call is not used.

        Args:
            trim: apply the trimming (``False``: behave exactly like ``HFLM``, no context sharing).
            share_context: run each distinct context once (only with ``trim``; not with ``forward``).
            forward: what each model call runs instead of the model (``None``: the model).
            *args, **kwargs: ``HFLM``'s.
        Attributes:
            trimmed_calls, full_calls: model calls made trimmed / in full (counters).
            shared_contexts: contexts run once for their continuations (counter).
        """

        def __init__(self, *args, trim: bool = True, share_context: bool = False, forward=None, **kwargs):
            if forward is not None and share_context:
                raise ValueError("share_context runs the model from its KV cache; it cannot be combined with forward")
            super().__init__(*args, **kwargs)
            self.trim = trim
            self.share_context = share_context
            self.forward = forward
            self.trimmed_calls = 0
            self.full_calls = 0
            self.shared_contexts = 0
            self._cont_lens: dict[tuple[int, ...], int] = {}
            self._input_lens: set[int] = set()
            self._accepts_keep: bool | None = None
            self._accepts_cache: bool | None = None

        def _forward_parameters(self) -> Any:
            try:
                return inspect.signature(self.model.forward).parameters
            except (TypeError, ValueError):
                return {}

        def cache_parameter(self) -> str | None:
            """The name of the KV-cache parameter of the model's ``forward`` (``cache`` in transformers 5,
            ``past_key_values`` before); ``None`` when it has neither (checked once)."""
            if self._accepts_cache is None:
                params = self._forward_parameters()
                self._accepts_cache = next((n for n in ("cache", "past_key_values") if n in params), "")
            return self._accepts_cache or None

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
            if not (self.trim and self.share_context and self.backend == "causal" and self.cache_parameter()):
                return self._trimmed_loglikelihood_tokens(requests, disable_tqdm, override_bs)
            groups: dict[tuple[int, ...], list[int]] = {}
            alone = []
            for i, (_, context_enc, continuation_enc) in enumerate(requests):
                if len(context_enc) + len(continuation_enc) > self.max_length + 1:
                    alone.append(i)  # lm-eval truncates it from the left: its own path
                else:
                    groups.setdefault(tuple(context_enc), []).append(i)
            out: list[Any] = [None] * len(requests)
            if alone:
                for i, answer in zip(alone, self._trimmed_loglikelihood_tokens([requests[i] for i in alone],
                                                                             disable_tqdm, override_bs)):
                    out[i] = answer
            for context, members in groups.items():
                answers = self.shared_context_loglikelihoods(list(context), [requests[i][2] for i in members])
                for i, answer in zip(members, answers):
                    out[i] = answer
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
            return out

        @torch.inference_mode()
        def shared_context_loglikelihoods(self, context: list[int], continuations: list[list[int]]
                                          ) -> list[tuple[float, bool]]:
            """``(log-likelihood, is_greedy)`` of each continuation after one context, the context run once.

            The tokens before the context's last one run once, keeping their keys and values
            (the KV cache); each continuation then runs from that cache, as the context's last
            token followed by its own tokens but the last, one batch row per continuation,
            right-padded (a causal model never attends to later padding). The log-likelihood
            sums ``log_softmax`` (lm-eval's softmax dtype) at the continuation tokens, as lm-eval's
            ``_loglikelihood_tokens`` does, and ``is_greedy`` says the argmax is each
            continuation token. Same values as the full forward of context + continuation to
            float32 rounding (tests check 1e-5, relative to the
            summed log-likelihood).

            Args:
                context: token ids, at least one.
                continuations: token ids each, at least one.
            Returns:
                one ``(float, bool)`` per continuation, in order.
            """
            device = self.device
            past = None
            if len(context) > 1:
                prefix = torch.tensor([context[:-1]], dtype=torch.long, device=device)
                out = self.model(prefix, use_cache=True, logits_to_keep=1)
                past = getattr(out, "cache", None) or out.past_key_values
                if len(continuations) > 1:
                    past.batch_repeat_interleave(len(continuations))
            width = max(len(c) for c in continuations)
            rows = [[context[-1], *c[:-1]] + [0] * (width - len(c)) for c in continuations]
            kwargs = {self.cache_parameter(): past, "use_cache": True} if past is not None else {"use_cache": False}
            logits = self.model(torch.tensor(rows, dtype=torch.long, device=device), **kwargs).logits
            logprobs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
            self.shared_contexts += 1
            answers = []
            for row, cont in zip(logprobs, continuations):
                target = torch.tensor(cont, dtype=torch.long, device=device)
                picked = row[: len(cont)]
                answers.append((float(picked.gather(1, target[:, None]).sum()),
                                bool((picked.argmax(dim=-1) == target).all())))
            return answers

        def _trimmed_loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
            lens: dict[tuple[int, ...], int] = {}
            if self.trim and self.backend == "causal":
                for _, context_enc, continuation_enc in requests:
                    key = tuple((context_enc + continuation_enc)[-(self.max_length + 1):][:-1])
                    lens[key] = max(lens.get(key, 0), len(continuation_enc))
            self._cont_lens, self._input_lens = lens, {len(k) for k in lens}
            try:
                return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
            finally:
                self._cont_lens, self._input_lens = {}, set()

        def accepts_logits_to_keep(self) -> bool:
            """Whether the model's ``forward`` names a ``logits_to_keep`` parameter (checked once)."""
            if self._accepts_keep is None:
                self._accepts_keep = "logits_to_keep" in self._forward_parameters()
            return self._accepts_keep

        def first_read_position(self, inps: torch.Tensor) -> int | None:
            """``s = min_i(inplen_i - contlen_i)`` over the rows of ``inps`` (``[batch, T]`` token ids).

            A row is matched to every recorded input ``row[:L]`` whose rest ``row[L:]`` is
            all padding (0); the smallest ``L - contlen`` over all matches is taken, so
            the kept positions always include those lm-eval reads. ``None``: some row
            matches no recorded request.
            """
            if not self._cont_lens:
                return None
            width = inps.shape[1]
            start = width
            for row in inps.tolist():
                end = width
                while end > 0 and row[end - 1] == 0:
                    end -= 1
                best = None
                for length in range(max(end, 1), width + 1):
                    if length in self._input_lens:
                        cont = self._cont_lens.get(tuple(row[:length]))
                        if cont is not None and (best is None or length - cont < best):
                            best = length - cont
                if best is None:
                    return None
                start = min(start, best)
            return max(start, 0)

        def _model_call(self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
            start = None
            if self.trim and attn_mask is None and labels is None and self.accepts_logits_to_keep():
                start = self.first_read_position(inps)
            if self.forward is not None and attn_mask is None and labels is None:
                if start:
                    self.trimmed_calls += 1
                else:
                    self.full_calls += 1
                with torch.no_grad():
                    return self.forward(inps, inps.shape[1] - start if start else None)
            if not start:  # None (no match) or 0 (every position is read)
                self.full_calls += 1
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
            self.trimmed_calls += 1
            with (torch.no_grad(),
                  torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                 enabled=self.mixed_precision_dtype is not None)):
                return self.model(inps, logits_to_keep=inps.shape[1] - start).logits

    TrimmedHFLM.__module__ = __name__
    _TRIMMED_HFLM = TrimmedHFLM
    return TrimmedHFLM


_TRIMMED_HFLM: type | None = None


def __getattr__(name: str):
    """``TrimmedHFLM`` is built on first access (importing lm-eval takes seconds)."""
    if name == "TrimmedHFLM":
        return trimmed_hflm()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
