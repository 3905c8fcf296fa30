"""yilightning: the Yi-Lightning system (arXiv 2412.01253) with hand-written C++/CUDA kernels.

>>> import torch, yilightning
>>> y = yilightning.ops.swiglu(torch.randn(8, 64))   # compiled kernel, or the reference
>>> info = yilightning.build_info()                     # what was compiled, what runs here
>>> model = yilightning.YiLightningForCausalLM(yilightning.YiLightningConfig.preset("tiny"))
"""

__version__ = "0.1.0"

from yilightning import layers, ops  # noqa: E402  (loads the extension and registers the ops)
from yilightning.info import build_info  # noqa: E402
from yilightning.model import YiLightningConfig, YiLightningForCausalLM  # noqa: E402  (registers with Auto*)

__all__ = ["YiLightningConfig", "YiLightningForCausalLM", "__version__", "build_info", "layers", "ops"]
