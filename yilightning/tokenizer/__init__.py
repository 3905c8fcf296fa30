"""SentencePiece BPE tokenizer as the report describes it (digits split into single digits,
byte fallback for rare characters), with chat-template special tokens.

``Tokenizer.save(dir)`` writes the SentencePiece model and its Hugging Face form
(``tokenizer.json``, ``tokenizer_config.json`` with the chat template), so
``transformers.AutoTokenizer.from_pretrained(dir)`` encodes as this class does, with one
difference that transformers imposes: it reads the literal strings ``<s>``, ``</s>``, ``<pad>``
and ``<unk>`` in a text as those special tokens (SentencePiece, and ``Tokenizer.to_hf()``, read
them as characters), and decodes them unless ``skip_special_tokens=True``.

>>> tok = train_tokenizer(["Hello world 2024!", "你好，世界"] * 200, vocab_size=300)
>>> tok.decode(tok.encode("Hello 42 🙂")) == "Hello 42 🙂"
True
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm
from tokenizers import AddedToken, decoders, models, normalizers
from tokenizers import Tokenizer as FastTokenizer

# Chat markup (ChatML style). A turn is <|im_start|>role\ncontent<|im_end|>\n.
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
_MARKUP = re.compile(f"({re.escape(IM_START)}|{re.escape(IM_END)})")
DEFAULT_SPECIAL_TOKENS = (IM_START, IM_END, "<|endoftext|>")
MODEL_FILE = "tokenizer.model"
# ChatML, rendering exactly the turns apply_chat_template encodes.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
ROLES = ("system", "user", "assistant")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MIN_VOCAB = 300  # byte fallback needs the 256 byte pieces plus the special and a few merges


class Tokenizer:
    """Encode/decode with a trained SentencePiece model, and the chat template."""

    def __init__(self, model_proto: bytes) -> None:
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self._proto = model_proto
        self.im_start, self.im_end = self.sp.piece_to_id(IM_START), self.sp.piece_to_id(IM_END)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """From a ``tokenizer.model`` file or a folder holding one (a saved model folder)."""
        p = Path(path)
        p = p / MODEL_FILE if p.is_dir() else p
        if not p.exists():
            raise FileNotFoundError(f"Tokenizer.load: no {MODEL_FILE} at {path}; train one with train_tokenizer()")
        return cls(p.read_bytes())

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.model`` into ``directory`` (beside a saved model), with its Hugging
        Face form (``tokenizer.json``, ``tokenizer_config.json``), each file atomically."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHAT_TEMPLATE,
            "bos_token": self.sp.id_to_piece(BOS_ID), "eos_token": self.sp.id_to_piece(EOS_ID),
            "unk_token": self.sp.id_to_piece(UNK_ID), "pad_token": self.sp.id_to_piece(PAD_ID),
            "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
        }
        files = {MODEL_FILE: self._proto, "tokenizer.json": self.to_hf().to_str().encode(),
                 "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False).encode()}
        for name, data in files.items():
            tmp = d / f"{name}.tmp"
            try:
                tmp.write_bytes(data)  # a plain file: the umask's mode
                os.replace(tmp, d / name)
            finally:
                tmp.unlink(missing_ok=True)
        return d / MODEL_FILE

    def to_hf(self) -> FastTokenizer:
        """The same tokenizer as a Hugging Face ``tokenizers.Tokenizer``: a byte-fallback BPE over
        this vocabulary whose merges are ranked by SentencePiece's piece scores (its merge order),
        spaces mapped to U+2581 as SentencePiece does, the user-defined pieces as special tokens
        cut out of raw text (as SentencePiece does; no merge makes a control piece). It encodes
        every text to the same ids."""
        sp, n = self.sp, self.sp.get_piece_size()
        pieces = [sp.id_to_piece(i) for i in range(n)]
        vocab = {p: i for i, p in enumerate(pieces)}
        first_byte = next((i for i in range(n) if sp.is_byte(i)), None)
        if first_byte is None or not sp.is_unknown(UNK_ID):
            raise ValueError("Tokenizer.to_hf: needs a byte-fallback BPE model made by train_tokenizer "
                             "(byte pieces, <unk> at id 1)")
        # control/unknown pieces and the user-defined symbols SentencePiece places before the bytes:
        # no merges make them; only the user-defined ones are cut out of raw text (SentencePiece
        # never reads a control piece such as "<s>" from text)
        special = {i for i in range(n) if sp.is_control(i) or sp.is_unknown(i) or i < first_byte}
        user_defined = sorted(i for i in range(first_byte) if not (sp.is_control(i) or sp.is_unknown(i)))
        merges = sorted(
            (i, vocab[p[:cut]], vocab[p[cut:]])
            for i, p in enumerate(pieces) if i not in special and not sp.is_byte(i)
            for cut in range(1, len(p))
            if vocab.get(p[:cut], -1) >= first_byte and vocab.get(p[cut:], -1) >= first_byte
        )
        fast = FastTokenizer(models.BPE(vocab=vocab, merges=[(pieces[a], pieces[b]) for _, a, b in merges],
                                        unk_token=pieces[UNK_ID], byte_fallback=True, fuse_unk=True))
        fast.normalizer = normalizers.Replace(" ", "\u2581")
        fast.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
        fast.add_special_tokens([AddedToken(pieces[i], special=True, normalized=False) for i in user_defined])
        return fast

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def pad_id(self) -> int:
        return PAD_ID

    def encode(self, text: str | Sequence[str], *, add_bos: bool = False, add_eos: bool = False
               ) -> list[int] | list[list[int]]:
        """Token ids of one text, or of each text of a list (batched)."""
        if isinstance(text, str):
            return self.sp.encode(_encodable(text), add_bos=add_bos, add_eos=add_eos)
        return self.sp.encode([_encodable(t) for t in text], add_bos=add_bos, add_eos=add_eos)

    def decode(self, ids: Sequence[int] | Sequence[Sequence[int]]) -> str | list[str]:
        """Text of one id list, or of each id list of a list."""
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"decode: ids must be a sequence of token ids, got {type(ids).__name__}")
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)  # numpy arrays, tensors
        if ids and hasattr(ids[0], "__len__"):
            return [self.decode(x) for x in ids]
        return self.sp.decode([int(i) for i in ids])

    def _encode_plain(self, text: str) -> list[int]:
        """``text`` with the chat markup strings encoded as ordinary characters, so that a user
        who types ``<|im_end|>`` cannot close the turn and open one of their own."""
        ids: list[int] = []
        for i, part in enumerate(_MARKUP.split(_encodable(text))):
            if i % 2:  # a markup string: its first character apart, so the symbol cannot match
                ids += self.sp.encode(part[0]) + self.sp.encode(part[1:])
            elif part:
                ids += self.sp.encode(part)
        return ids

    def apply_chat_template(self, messages: Sequence[dict], *, add_generation_prompt: bool = False
                            ) -> tuple[list[int], list[int]]:
        """``(ids, loss_mask)`` of a conversation: ``messages`` are ``{"role", "content"}`` with
        role system/user/assistant. The mask is 1 on the assistant replies and their closing
        ``<|im_end|>`` (what SFT learns), 0 elsewhere. ``add_generation_prompt`` appends an open
        assistant turn for generation."""
        if self.sp.id_to_piece(self.im_start) != IM_START or self.sp.id_to_piece(self.im_end) != IM_END:
            raise ValueError(f"apply_chat_template: this tokenizer has no {IM_START} / {IM_END} pieces; train it "
                             "with them among special_tokens (the default)")
        ids: list[int] = []
        mask: list[int] = []
        newline = self.sp.encode("\n")
        for i, m in enumerate(messages):
            role, content = (m.get("role"), m.get("content")) if isinstance(m, dict) else (None, None)
            if role not in ROLES or not isinstance(content, str):
                raise ValueError(f"apply_chat_template: message {i} needs role in {ROLES} and a string content, got {m!r}")
            head = [self.im_start] + self.sp.encode(role) + newline
            body = self._encode_plain(content) + [self.im_end]
            learn = int(role == "assistant")
            ids += head + body + newline
            mask += [0] * len(head) + [learn] * len(body) + [0] * len(newline)
        if add_generation_prompt:
            head = [self.im_start] + self.sp.encode("assistant") + newline
            ids += head
            mask += [0] * len(head)
        return ids, mask


def _encodable(text: str) -> str:
    """``text`` with lone surrogates (which UTF-8 cannot encode; SentencePiece would fail with an
    opaque error) replaced by U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def train_tokenizer(texts: Iterable[str] | None = None, *, files: Sequence[str | os.PathLike] = (),
                    vocab_size: int = 8192, special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
                    max_sentences: int = 2_000_000, num_threads: int | None = None) -> Tokenizer:
    """Train SentencePiece BPE on in-memory ``texts`` and/or text ``files`` (one sample per
    line): digits split, byte fallback, identity normalisation (decode(encode(x)) == x, except
    that U+2581 "▁", SentencePiece's own mark for a space, comes back as a space, as in every
    SentencePiece tokenizer and in transformers' reading of this one), the
    special tokens as single pieces, no dummy-prefix space (segments concatenate exactly);
    pad/unk/bos/eos are ids 0-3. ``vocab_size`` is 100,352 for
    the paper preset; at least 300 (the byte pieces)."""
    if vocab_size < MIN_VOCAB:
        raise ValueError(f"train_tokenizer: vocab_size must be >= {MIN_VOCAB} (256 byte pieces for byte fallback "
                         f"plus specials), got {vocab_size}")

    def sentences() -> Iterable[str]:
        for t in texts or ():
            yield from (line for line in t.split("\n") if line)
        for f in files:
            with open(f, encoding="utf-8", errors="replace") as fh:
                yield from (line.rstrip("\n") for line in fh if line.strip())

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences()), model_writer=model, model_type="bpe", vocab_size=vocab_size,
            split_digits=True, byte_fallback=True, user_defined_symbols=list(special_tokens),
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, normalization_rule_name="identity",
            remove_extra_whitespaces=False, add_dummy_prefix=False, allow_whitespace_only_pieces=True,
            character_coverage=0.9995,
            input_sentence_size=max_sentences, shuffle_input_sentence=True, train_extremely_large_corpus=False,
            num_threads=num_threads or os.cpu_count() or 1, minloglevel=2,
        )
    except RuntimeError as e:
        raise ValueError(f"train_tokenizer: SentencePiece could not train a {vocab_size}-token vocabulary on this "
                         f"data ({e}); change vocab_size (it must hold the 256 byte pieces and the distinct "
                         "characters, and not exceed what the text supports) or give more text") from e
    return Tokenizer(model.getvalue())


__all__ = ["DEFAULT_SPECIAL_TOKENS", "IM_END", "IM_START", "Tokenizer", "train_tokenizer"]
