"""Fixtures shared by the CPU benchmarks."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread, as in a study job on CPU (`run.threads=1`) and a DataLoader worker
    (torch sets 1 there): the CPU benchmarks that take it measure a single core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
