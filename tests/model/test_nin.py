import pytest
import torch

from model.nin import NiN, NiNConfig, count_parameters, fold_batchnorm


def test_parameter_count_matches_the_paper_network():
    assert count_parameters(NiN(NiNConfig(batchnorm=False))) == 966_986
    assert count_parameters(NiN()) <= 1_000_000


@pytest.mark.parametrize(("height", "width"), [(32, 32), (48, 64), (36, 40)])
def test_maps_are_a_quarter_of_the_input_and_logits_are_their_mean(height, width):
    net = NiN(NiNConfig(num_classes=7)).eval()
    x = torch.randn(2, 3, height, width)
    maps = net.forward_features(x)
    assert maps.shape == (2, 7, -(-height // 4), -(-width // 4))
    torch.testing.assert_close(net(x), maps.mean(dim=(2, 3)))


def test_relu_after_every_conv_makes_maps_non_negative():
    net = NiN().eval()
    assert (net.forward_features(torch.randn(3, 3, 32, 32)) >= 0).all()


def test_batchnorm_folding_preserves_outputs():
    torch.manual_seed(0)
    net = NiN().eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(folded.forward_features(x), net.forward_features(x), atol=1e-4, rtol=1e-4)
