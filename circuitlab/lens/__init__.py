"""The logit lens: the next-token distribution read from the residual stream after each layer,
through the final norm recomputed on that layer's residual stream (guide:
``docs/guides/logit-lens.md``)."""

from circuitlab.lens.logit_lens import LensReader, lens_logits, logit_lens
from circuitlab.lens.result import EMBED, LogitLens

__all__ = ["EMBED", "LensReader", "LogitLens", "lens_logits", "logit_lens"]
