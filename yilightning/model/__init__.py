"""The Yi-Lightning model: config presets, the causal LM, KV cache and generation."""

from transformers import AutoConfig, AutoModelForCausalLM

from yilightning.model.config import PRESETS, YiLightningConfig
from yilightning.model.modeling import CausalLMOutput, ModelCache, YiLightningForCausalLM

AutoConfig.register("yilightning", YiLightningConfig, exist_ok=True)
AutoModelForCausalLM.register(YiLightningConfig, YiLightningForCausalLM, exist_ok=True)

__all__ = ["PRESETS", "CausalLMOutput", "ModelCache", "YiLightningConfig", "YiLightningForCausalLM"]
