import pytest
import torch


@pytest.fixture
def poison():
    """Every tensor torch allocates uninitialised (our outputs and workspaces included:
    the shim allocates through torch) is filled with NaN, so an element a kernel forgets
    to write fails the comparison instead of passing on leftover memory."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    assert torch.isnan(torch.empty(8)).all()  # the poison is really on
    yield
    torch.use_deterministic_algorithms(prev)
    torch.utils.deterministic.fill_uninitialized_memory = prev_fill
