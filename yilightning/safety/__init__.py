"""RAISE, the Responsible AI Safety Engine (Yi-Lightning report, section 6).

Four components: pre-training safety (:func:`filter_corpus`), post-training optimisation
(:func:`safety_sft_examples`, :func:`safety_preference_pairs`, :func:`safety_reward`), input
safety processing (:meth:`RAISE.check_input`) and output safety control
(:meth:`RAISE.check_output`, :meth:`RAISE.guard_stream`), over the 14 risk categories of the Yi
reports (:data:`CATEGORIES`, mapped to the S1-S14 hazard codes).
"""

from yilightning.safety.classifier import ClassifierConfig, NgramClassifier, default_classifier, train_classifier
from yilightning.safety.engine import RAISE, Assessment, GuardedStream, StreamReport, Verdict
from yilightning.safety.injection import find_injections, neutralize
from yilightning.safety.pii import PIISpan, find_pii, mask_pii
from yilightning.safety.policy import ACTIONS, CategoryRule, Policy
from yilightning.safety.posttrain import is_refusal, safety_preference_pairs, safety_reward, safety_sft_examples
from yilightning.safety.pretrain import FilterStats, filter_corpus
from yilightning.safety.taxonomy import CATEGORIES, CATEGORY_NAMES, HAZARD_CODES, Category, hazard_codes
from yilightning.safety.text import decode_payloads, normalize, sanitize

__all__ = [
    "ACTIONS", "CATEGORIES", "CATEGORY_NAMES", "HAZARD_CODES", "RAISE", "Assessment", "Category", "CategoryRule",
    "ClassifierConfig", "FilterStats", "GuardedStream", "NgramClassifier", "PIISpan", "Policy", "StreamReport",
    "Verdict", "decode_payloads", "default_classifier", "filter_corpus", "find_injections", "find_pii", "hazard_codes",
    "is_refusal", "mask_pii", "neutralize", "normalize", "safety_preference_pairs", "safety_reward",
    "safety_sft_examples", "sanitize", "train_classifier",
]
