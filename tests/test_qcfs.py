"""The QCFS activation and its bit-L1 surrogate."""
import torch

from lava_deploy.qcfs.activation import QCFS, popcount


def test_forward_is_the_quantized_clip_floor_shift():
    act = QCFS(levels=7, threshold=2.0)
    z = torch.linspace(-1, 3, 401)
    k = torch.clamp(torch.floor(z * 7 / 2.0 + 0.5), 0, 7)
    torch.testing.assert_close(act(z), k * 2.0 / 7)
    torch.testing.assert_close(act.codes(z), k)


def test_levels_from_the_qcfs_reference_code_give_enough_bits():
    assert QCFS(levels=7).time_steps == 3
    assert QCFS(levels=4).time_steps == 3   # MyFloor(up, t=4): 5 codes need 3 bits
    assert QCFS(levels=8).time_steps == 4
    assert QCFS(levels=1).time_steps == 1


def test_straight_through_gradient_reaches_input_and_threshold():
    act = QCFS(levels=3, threshold=1.0)
    z = torch.tensor([-0.5, 0.2, 0.6, 2.0], requires_grad=True)
    act(z).sum().backward()
    # Inside the clip range the floor passes the gradient straight through.
    assert z.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert act.threshold.grad is not None and act.threshold.grad != 0


def test_popcount():
    assert popcount(torch.tensor([0, 1, 2, 3, 7, 8, 255])).tolist() == [0, 1, 1, 2, 3, 1, 8]


def test_bit_penalty_pushes_codes_towards_fewer_ones():
    act = QCFS(levels=15, threshold=15.0)   # code = round(z)
    act.count_spikes = True
    z = torch.tensor([[7.0, 8.0, 1.0]], requires_grad=True)   # one sample, three neurons
    act(z)
    assert float(act.spike_count) == 3 + 1 + 1                  # spikes per sample
    act.spike_count.backward()
    # 7 (0111) gains by going up to 8 (1000); 1 (0001) gains by going down to 0.
    assert z.grad[0, 0] < 0 and z.grad[0, 2] > 0
