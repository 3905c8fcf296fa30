"""Pre-training data: the embedded corpus, cleaning (quality, dedup, decontamination, a safety
hook) and packing into block-causal training sequences."""

from yilightning.data.clustering import Organisation, organize
from yilightning.data.corpus import Document, embedded_corpus, math_documents, stdlib_documents
from yilightning.data.filters import (CleanCorpus, DataReport, Decontaminator, MinHashDedup, QualityConfig,
                                      clean_corpus, quality_issue)
from yilightning.data.packing import PackedDataset, write_tokens
from yilightning.data.readers import read_documents

__all__ = ["Organisation", "organize", "CleanCorpus", "DataReport", "Decontaminator", "Document", "MinHashDedup", "PackedDataset", "QualityConfig",
           "clean_corpus", "embedded_corpus", "math_documents", "quality_issue", "read_documents", "stdlib_documents",
           "write_tokens"]
