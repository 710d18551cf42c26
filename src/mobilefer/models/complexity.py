"""Parameter and multiply-accumulate counts of a network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mobilefer.errors import InvalidInputError

__all__ = ["count_macs", "count_parameters"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (shared parameters counted once).

    Args:
        model: Any module.
        trainable_only: Count only parameters with ``requires_grad``.

    Returns:
        The parameter count (buffers such as BatchNorm running statistics are not parameters).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: Sequence[int] = (224, 224), in_chans: int | None = None) -> int:
    """Multiply-accumulates of one forward pass of a single image, measured with ``FlopCounterMode``.

    Counts the matrix products (convolutions, linear layers); normalisation, activations, pooling and
    additions are not counted, as in the MobileNet papers. MACs are FLOPs / 2.

    Args:
        model: The network; it is run once in eval mode under ``torch.no_grad`` and its training mode is
            restored afterwards.
        input_size: ``(height, width)`` of the input.
        in_chans: Input channels; default: ``model.in_chans`` if the model has it, else 3.

    Returns:
        The number of multiply-accumulates.

    Raises:
        InvalidInputError: If ``input_size`` is not two positive integers or ``in_chans`` is not positive.
    """
    if len(input_size) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_size
    ):
        raise InvalidInputError(
            f"input_size must be two positive integers (height, width), got {input_size!r}"
        )
    channels = in_chans if in_chans is not None else getattr(model, "in_chans", 3)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise InvalidInputError(f"in_chans must be a positive integer, got {channels!r}")
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    x = torch.zeros(1, channels, input_size[0], input_size[1], device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2
