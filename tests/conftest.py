"""Shared fixtures of the lrdlib unit tests."""
import pytest
import torch

# The models of the tests are tiny: one intra-op thread for the whole session. With more, OpenMP
# threads spin waiting on each other on a busy machine and a 1 s test takes minutes.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's tensors on one intra-op thread, restored afterwards.

    The models in these tests are tiny: a second thread buys nothing, and on a busy 2-core
    machine OpenMP threads waiting on each other make a 1.5 s training run take 10+ s.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
