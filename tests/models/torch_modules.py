"""PyTorch modules for the flavor tests (importable, so the state-dict fallback can rebuild them).

Imported only by tests that have already checked that torch is installed.
"""

from __future__ import annotations

import torch


class ScriptableNet(torch.nn.Module):
    """A small classifier head that ``torch.jit.script`` compiles."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.out(torch.relu(self.hidden(x))), dim=1)


class UnscriptableNet(torch.nn.Module):
    """``forward(**kwargs)`` defeats TorchScript; init kwargs let Shipyard rebuild it."""

    def __init__(self, n_in: int = 4, hidden: int = 6) -> None:
        super().__init__()
        self._shipyard_init_kwargs = {"n_in": n_in, "hidden": hidden}
        self.hidden = torch.nn.Linear(n_in, hidden)
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, **options: object) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x))).squeeze(1)


class NeedsArgsNet(torch.nn.Module):
    """Unscriptable and built from a required argument it does not record."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(width, 1)

    def forward(self, x: torch.Tensor, **options: object) -> torch.Tensor:
        return self.lin(x)
