"""The Loss interface: a named, reusable objective that models look up by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch


class Loss(ABC):
    """A named objective, returned per sample (shape ``(batch,)``); callers sum or mean.

    ``kind`` says how it is called:

    * ``"reconstruction"``: ``loss(logits, x)`` with decoder logits and targets in [0, 1];
    * ``"divergence"``: ``loss(mu, logvar)``, a divergence of N(mu, exp(logvar)) to a prior;
    * ``"adversarial"``: ``loss(logits, real)``, the loss of discriminator logits
      against the label ``real`` (True or False); generators call it with ``real=True``.
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    description: ClassVar[str] = ""
    #: For a reconstruction loss: it is the decoder's normalised negative log-likelihood
    #: of the image in nats (as ``bce-sum``), so reconstruction + KL is a negative ELBO
    #: and its negation the log p(x | z) of importance weights; a plain distance
    #: (``mse``) is not.
    negative_log_likelihood: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Return the loss of each sample in the batch (each loss chooses its own arguments)."""
