"""Review r3 of the twenty-fourth round's merges (a3 state checks, b3 --nproc buffers and plugins record, c3
evaluation, d3 exit watch): realistic, legitimate plugins that the new checks must not refuse.

The loss sharing check (``model._own_loss``) and the optimiser checks (``building.unkept_optimizer_state`` and
``building.unkept_parameter_attributes``, against a fresh build given the state_dicts, as ``Trainer`` makes it) are
held here to a loss holding a ``torch.nn.Module`` or a compiled function, an optimiser wrapping another one (a
timm-style Lookahead that keeps its slow weights in the inner optimiser's state), an optimiser with several param
groups, and models whose weights go through ``torch.nn.utils.parametrize`` (weight_norm, spectral_norm,
orthogonal) or the older hook-based weight_norm and spectral_norm.
"""

from collections import defaultdict
from typing import Any, Callable

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, spectral_norm, weight_norm

from genzoo.building import unkept_optimizer_state, unkept_parameter_attributes
from genzoo.loss import Loss
from genzoo.model import _own_loss


class ModuleLoss(Loss):
    """A loss holding a small network (a perceptual loss's feature extractor)."""

    name = "module-loss"
    kind = "reconstruction"

    def __init__(self) -> None:
        self.features = nn.Linear(4, 2)

    def __call__(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (self.features(logits) - self.features(x)).square().sum(1)


def _squared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).square().sum(1)


class CompiledLoss(Loss):
    """A loss holding a function through ``torch.compile`` (compiled lazily, at its first call)."""

    name = "compiled-loss"
    kind = "reconstruction"

    def __init__(self) -> None:
        self.fn = torch.compile(_squared)

    def __call__(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.fn(logits, x)


@pytest.mark.parametrize("loss", [ModuleLoss(), CompiledLoss()], ids=["module", "compiled"])
def test_a_loss_holding_a_module_or_a_compiled_function_is_its_own_copy_not_refused(loss: Loss) -> None:
    own, why = _own_loss(loss.name, loss)
    assert why is None
    assert own is not loss


class Lookahead(torch.optim.Optimizer):
    """timm's Lookahead as it is written: the wrapper shares its inner optimiser's param groups and defaults, and
    keeps its slow weights in the inner optimiser's state (which its state_dict is)."""

    def __init__(self, base: torch.optim.Optimizer, alpha: float = 0.5, k: int = 2) -> None:
        defaults = {"lookahead_alpha": alpha, "lookahead_k": k, "lookahead_step": 0}
        self._base_optimizer = base
        self.param_groups = base.param_groups
        self.defaults = base.defaults
        self.defaults.update(defaults)
        self.state: Any = defaultdict(dict)
        for name, default in defaults.items():
            for group in base.param_groups:
                group.setdefault(name, default)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = self._base_optimizer.step(closure)
        for group in self._base_optimizer.param_groups:
            group["lookahead_step"] += 1
            if group["lookahead_step"] % group["lookahead_k"] == 0:
                for fast in group["params"]:
                    state = self._base_optimizer.state[fast]
                    slow = state.setdefault("lookahead_slow_buff", fast.detach().clone())
                    slow.add_(fast.detach() - slow, alpha=group["lookahead_alpha"])
                    fast.data.copy_(slow)
        return loss

    def state_dict(self) -> dict[str, Any]:
        return self._base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._base_optimizer.load_state_dict(state_dict)
        self.param_groups = self._base_optimizer.param_groups


def _net(kind: str) -> nn.Module:
    """A small network whose first layer's weight goes through ``kind``."""
    wraps: dict[str, Callable[[nn.Module], nn.Module]] = {
        "plain": lambda m: m, "weight_norm": weight_norm, "spectral_norm": spectral_norm,
        "parametrized_weight_norm": parametrizations.weight_norm,
        "parametrized_spectral_norm": parametrizations.spectral_norm,
        "orthogonal": parametrizations.orthogonal}
    return nn.Sequential(wraps[kind](nn.Linear(4, 4)), nn.Tanh(), nn.Linear(4, 1))


def _optimizer(net: nn.Module, kind: str) -> torch.optim.Optimizer:
    """``kind``: one Adam, Adam with two param groups, or a Lookahead around Adam."""
    if kind == "groups":
        first, last = list(net.children())[0], list(net.children())[-1]
        return torch.optim.Adam([{"params": first.parameters()}, {"params": last.parameters(), "lr": 1e-2}], lr=1e-3)
    adam = torch.optim.Adam(net.parameters(), lr=1e-3)
    return Lookahead(adam) if kind == "lookahead" else adam


@pytest.mark.parametrize("optimizer_kind", ["adam", "groups", "lookahead"])
@pytest.mark.parametrize("net_kind", ["plain", "weight_norm", "spectral_norm", "parametrized_weight_norm",
                                      "parametrized_spectral_norm", "orthogonal"])
def test_legitimate_optimisers_and_parametrized_weights_pass_the_optimiser_checks(net_kind: str,
                                                                                  optimizer_kind: str) -> None:
    torch.manual_seed(0)
    net = _net(net_kind)
    trained = _optimizer(net, optimizer_kind)
    for _ in range(5):
        net.zero_grad()
        net(torch.randn(8, 4)).square().mean().backward()
        trained.step()
    torch.manual_seed(5)  # a fresh build under another seed, given the state_dicts, as the trainer's check makes it
    fresh_net = _net(net_kind)
    fresh_net.load_state_dict(net.state_dict())
    fresh = _optimizer(fresh_net, optimizer_kind)
    fresh.load_state_dict(trained.state_dict())
    names = {id(param): name for name, param in net.named_parameters()}
    assert unkept_optimizer_state(trained, fresh) == []
    assert unkept_parameter_attributes(trained, fresh, names) == []
