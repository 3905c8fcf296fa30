"""Text in, text out: streaming generation with a tokenizer and an optional safety engine."""

from __future__ import annotations

from typing import Iterator

import torch

REFUSAL = "I can't help with that request."


def stream_text(model, tokenizer, prompt: str, *, max_new_tokens: int = 64, safety=None,
                refusal: str = REFUSAL, **sampling) -> Iterator[str]:
    """Streams the completion of ``prompt`` as text pieces (decoded incrementally, so multi-byte
    characters and word spacing come out right). ``sampling`` goes to ``model.stream``
    (temperature, top_p, top_k, repetition_penalty, seed).

    ``safety``: a RAISE engine (``yilightning.safety.RAISE()``) or anything with the same
    ``check_input`` / ``guard_stream`` methods. The prompt is screened first (``block`` ->
    ``refusal`` is the whole answer; ``rewrite`` -> the rewritten prompt is what the model sees)
    and the output is streamed through ``guard_stream``, which masks PII and stops the response
    if it turns unsafe."""
    if safety is not None:
        verdict = safety.check_input(prompt)
        if verdict.action == "block":
            yield refusal
            return
        prompt = verdict.rewritten
    pieces = _pieces(model, tokenizer, prompt, max_new_tokens, sampling)
    yield from safety.guard_stream(pieces) if safety is not None else pieces


def _pieces(model, tokenizer, prompt: str, max_new_tokens: int, sampling: dict) -> Iterator[str]:
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("stream_text: the prompt encodes to no tokens; pass a non-empty prompt")
    out: list[int] = []
    shown = ""
    with torch.no_grad():
        for step in model.stream([ids], max_new_tokens, stop_token_ids=(tokenizer.eos_id,), **sampling):
            if step[0] is None or step[0] == tokenizer.eos_id:
                continue
            out.append(step[0])
            text = tokenizer.decode(out)
            if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next byte token
                continue
            if len(text) > len(shown):
                yield text[len(shown):]
                shown = text
    text = tokenizer.decode(out)  # the end: a trailing U+FFFD (or a byte sequence left incomplete) too
    if len(text) > len(shown):
        yield text[len(shown):]
