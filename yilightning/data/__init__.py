"""Pre-training data: the embedded corpus and packing into block-causal training sequences."""

from yilightning.data.corpus import Document, embedded_corpus, math_documents, stdlib_documents
from yilightning.data.packing import PackedDataset, write_tokens

__all__ = ["Document", "PackedDataset", "embedded_corpus", "math_documents", "stdlib_documents", "write_tokens"]
