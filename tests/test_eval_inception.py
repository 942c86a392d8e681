"""The FID Inception-v3: the published layout and feature-map shapes, the TensorFlow graph's wiring
of every block type, sFID's spatial features, the weights file checks and loading, the TF1 resize
and scaling, and batch, greyscale and determinism invariants. Random weights throughout: the
published file is not here (tests/test_fid_parity.py compares with torch-fidelity where it is)."""

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from prakit_eval import inception
from prakit_eval.inception import (
    PREPROCESSING,
    SPATIAL_BLOCK,
    WEIGHTS_ENV,
    WEIGHTS_NAME,
    WEIGHTS_SHA256,
    WEIGHTS_URL,
    Inception,
    InceptionConfig,
    InceptionV3,
    resize_bilinear_tf1,
)

from prakit.errors import PrakitError
from prakit.testing import FeatureNetworkContract

MIXED_SHAPES = {  # (channels, side) of each block's output for a 299x299 input
    "Mixed_5b": (256, 35),
    "Mixed_5c": (288, 35),
    "Mixed_5d": (288, 35),
    "Mixed_6a": (768, 17),
    "Mixed_6b": (768, 17),
    "Mixed_6c": (768, 17),
    "Mixed_6d": (768, 17),
    "Mixed_6e": (768, 17),
    "Mixed_7a": (1280, 8),
    "Mixed_7b": (2048, 8),
    "Mixed_7c": (2048, 8),
}


@pytest.fixture(scope="module")
def net():
    return InceptionV3.with_random_weights(seed=0)


def random_images(*shape, seed=0):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def capture(net, names, images):
    """Forward ``images``; return the (first input, output) of each named submodule, and the result."""
    seen = {}
    modules = dict(net.named_modules())
    handles = [
        modules[name].register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, (args[0], out)))
        for name in names
    ]
    try:
        result = net(images)
    finally:
        for handle in handles:
            handle.remove()
    return seen, result


# -- layout ---------------------------------------------------------------------------------------


def test_feature_maps_have_the_published_shapes(net):
    names = ["Conv2d_1a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_4a_3x3", "MaxPool_2", *MIXED_SHAPES]
    seen, (features, logits) = capture(net, names, random_images(1, 64, 80, 3))
    out = {name: output for name, (_, output) in seen.items()}
    assert out["Conv2d_1a_3x3"].shape == (1, 32, 149, 149)
    assert out["Conv2d_2b_3x3"].shape == (1, 64, 147, 147)
    assert out["MaxPool_1"].shape == (1, 64, 73, 73)
    assert out["Conv2d_4a_3x3"].shape == (1, 192, 71, 71)
    assert out["MaxPool_2"].shape == (1, 192, 35, 35)  # the stem's output
    assert seen["Mixed_5b"][0] is out["MaxPool_2"]
    for name, (channels, side) in MIXED_SHAPES.items():
        assert out[name].shape == (1, channels, side, side), name
    assert features.shape == (1, 2048) and logits.shape == (1, 1008)
    assert features.dtype == logits.dtype == torch.float32
    torch.testing.assert_close(features, out["Mixed_7c"].mean((2, 3)))  # pool3: the global average
    assert torch.allclose(logits, features @ net.fc.weight.T, atol=1e-5)
    assert net.num_features == 2048 and net.num_logits == 1008 and not net.predicts_labels


def test_state_dict_has_the_published_keys_and_shapes(net):
    state = net.state_dict()
    published = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_1a_3x3.bn.running_var": (32,),
        "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
        "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3dbl_1.bn.bias": (448,),
        "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "fc.weight": (1008, 2048),
        "fc.bias": (1008,),
    }
    for key, shape in published.items():
        assert state[key].shape == shape, key
    assert not any("AuxLogits" in key or key.endswith("conv.bias") for key in state)
    batchnorms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(batchnorms) == 94 and all(bn.eps == 0.001 for bn in batchnorms)
    # 94 convolutions + 2 x 94 BatchNorm affines + fc weight and bias
    assert len(list(net.parameters())) == 284
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == 284 + 2 * 94
    # torchvision reports 27,161,264 parameters for Inception3 (aux logits, 1000 classes). Its aux
    # classifier: conv0 768->128 1x1 + BN, conv1 128->768 5x5 + BN, fc 768->1000. The FID
    # network drops it and has 1008 classes (8 more fc rows of 2048 weights and a bias each).
    aux = 128 * 768 + 2 * 128 + 768 * 128 * 25 + 2 * 768 + 768 * 1000 + 1000
    assert sum(p.numel() for p in net.parameters()) == 27_161_264 - aux + 8 * (2048 + 1)  # 23,850,960


def avg(x):
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)  # TensorFlow leaves the padding out of the mean


def max3x3(x):
    return F.max_pool2d(x, 3, 1, 1)


def max_reduce(x):
    return F.max_pool2d(x, 3, 2)


# Each block of the TensorFlow graph (torchvision's names): what every convolution reads ("x", the
# block input; a pool of it; or another convolution), and what the output concatenates, in order.
A = {"branch1x1": "x", "branch5x5_1": "x", "branch5x5_2": "branch5x5_1", "branch3x3dbl_1": "x",
     "branch3x3dbl_2": "branch3x3dbl_1", "branch3x3dbl_3": "branch3x3dbl_2", "branch_pool": avg}
B = {"branch3x3": "x", "branch3x3dbl_1": "x", "branch3x3dbl_2": "branch3x3dbl_1", "branch3x3dbl_3": "branch3x3dbl_2"}
C = {"branch1x1": "x", "branch7x7_1": "x", "branch7x7_2": "branch7x7_1", "branch7x7_3": "branch7x7_2",
     "branch7x7dbl_1": "x", **{f"branch7x7dbl_{i}": f"branch7x7dbl_{i - 1}" for i in range(2, 6)}, "branch_pool": avg}
D = {"branch3x3_1": "x", "branch3x3_2": "branch3x3_1", "branch7x7x3_1": "x",
     **{f"branch7x7x3_{i}": f"branch7x7x3_{i - 1}" for i in range(2, 5)}}
E = {"branch1x1": "x", "branch3x3_1": "x", "branch3x3_2a": "branch3x3_1", "branch3x3_2b": "branch3x3_1",
     "branch3x3dbl_1": "x", "branch3x3dbl_2": "branch3x3dbl_1", "branch3x3dbl_3a": "branch3x3dbl_2",
     "branch3x3dbl_3b": "branch3x3dbl_2"}
E_OUT = ["branch1x1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"]
BLOCKS = {
    "Mixed_5b": (A, ["branch1x1", "branch5x5_2", "branch3x3dbl_3", "branch_pool"]),
    "Mixed_6a": (B, ["branch3x3", "branch3x3dbl_3", max_reduce]),
    "Mixed_6b": (C, ["branch1x1", "branch7x7_3", "branch7x7dbl_5", "branch_pool"]),
    "Mixed_7a": (D, ["branch3x3_2", "branch7x7x3_4", max_reduce]),
    "Mixed_7b": ({**E, "branch_pool": avg}, E_OUT),
    "Mixed_7c": ({**E, "branch_pool": max3x3}, E_OUT),  # a max pool here (torchvision's Inception-v3 averages)
}


def test_blocks_wire_their_branches_as_the_tensorflow_graph(net):
    names = [*BLOCKS, *(f"{block}.{conv}" for block, (reads, _) in BLOCKS.items() for conv in reads)]
    seen, _ = capture(net, names, random_images(1, 32, 32, 3))
    for block, (reads, concatenated) in BLOCKS.items():
        x, out = seen[block]
        assert {name for name, _ in getattr(net, block).named_children()} == set(reads), block

        def value(source):
            return source(x) if callable(source) else x if source == "x" else seen[f"{block}.{source}"][1]

        for conv, source in reads.items():
            assert torch.equal(seen[f"{block}.{conv}"][0], value(source)), f"{block}.{conv}"
            assert seen[f"{block}.{conv}"][1].min() >= 0, f"{block}.{conv}"  # ReLU
        assert torch.equal(out, torch.cat([value(part) for part in concatenated], 1)), block
    x = seen["Mixed_5b"][0]
    assert not torch.allclose(avg(x), F.avg_pool2d(x, 3, 1, 1))  # the padding matters at the border


# -- spatial features (sFID) ---------------------------------------------------------------------

#: The TensorFlow graph's mixed blocks, in the order of the graph (and of the port's trunk).
TF_BLOCKS = ["mixed", *(f"mixed_{i}" for i in range(1, 11))]


def test_the_graphs_mixed_6_is_mixed_6d(net):
    """The graph numbers its blocks in order, so ``mixed_6/conv`` (ADM's spatial features) is the
    1x1 branch of the seventh block, Mixed_6d, the third after the 35 -> 17 reduction."""
    mixed = [name for name in net.trunk if name.startswith("Mixed_")]
    assert dict(zip(TF_BLOCKS, mixed, strict=True))["mixed_6"] == SPATIAL_BLOCK == "Mixed_6d"
    assert mixed.index("Mixed_6a") == TF_BLOCKS.index("mixed_3")  # the reductions, which have no 1x1 branch
    assert mixed.index("Mixed_7a") == TF_BLOCKS.index("mixed_8")
    assert not hasattr(net.Mixed_6a, "branch1x1") and not hasattr(net.Mixed_7a, "branch1x1")


def test_spatial_features_are_the_first_7_channels_of_mixed_6d_1x1_branch_row_by_row(net):
    images = random_images(2, 40, 30, 3, seed=11)
    seen, _ = capture(net, ["Mixed_6d.branch1x1"], images)
    branch = seen["Mixed_6d.branch1x1"][1]
    assert branch.shape == (2, 192, 17, 17) and branch.min() >= 0  # after its ReLU
    features, logits, spatial = net.forward_with_spatial(images)
    assert spatial.shape == (2, 2023) == (2, net.num_spatial) and spatial.dtype == torch.float32
    assert torch.equal(spatial, branch[:, :7].permute(0, 2, 3, 1).reshape(2, 2023))
    for h, w, c in [(0, 0, 0), (0, 0, 6), (0, 1, 0), (5, 11, 3), (16, 16, 6)]:  # feature (h * 17 + w) * 7 + c
        assert spatial[1, (h * 17 + w) * 7 + c] == branch[1, c, h, w]
    assert all(torch.equal(a, b) for a, b in zip((features, logits), net(images)))  # one pass, same numbers


# -- weights --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source():
    """A random network whose BatchNorms are not the identity and whose fc has a bias, so loading them matters."""
    net = InceptionV3.with_random_weights(seed=1)
    gen = torch.Generator().manual_seed(2)
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        n = bn.num_features
        bn.weight.copy_(0.5 + torch.rand(n, generator=gen))
        bn.bias.copy_(0.1 * torch.randn(n, generator=gen))
        bn.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
        bn.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    net.fc.bias.copy_(torch.randn(1008, generator=gen))
    return net


def write(state, path, *, legacy=False):
    """Save ``state`` to ``path``; return the file's SHA-256."""
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def without_counters(state):
    """``state`` less its BatchNorm counters, keeping its version metadata (which makes them required)."""
    for key in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[key]
    return state


@pytest.mark.parametrize(
    "form, via_env",
    [("published", False), ("state_dict", True), ("state_dict_without_counters", False)],
)
def test_weights_file_loads_into_the_same_network(source, tmp_path, monkeypatch, form, via_env):
    """Loads what the published file is inferred to be (a plain dict without BatchNorm counters, in the
    legacy format), and a module's state dict with and without its counters."""
    path, state = tmp_path / "weights.pth", source.state_dict()
    if form == "published":
        digest = write({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path, legacy=True)
    else:
        digest = write(without_counters(state) if form.endswith("without_counters") else state, path)
    monkeypatch.setattr(inception, "WEIGHTS_SHA256", digest)
    if via_env:
        monkeypatch.setenv(WEIGHTS_ENV, str(path))
        cfg = InceptionConfig()
    else:
        monkeypatch.delenv(WEIGHTS_ENV, raising=False)
        cfg = InceptionConfig(weights=str(path))
    loaded = Inception(cfg, store=None, device=torch.device("cpu"), progress=False)
    expected = source.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items() if "num_batches" not in k)
    images = random_images(1, 40, 30, 3, seed=3)
    features, logits = loaded(images)
    assert all(torch.equal(a, b) for a, b in zip((features, logits), source(images)))
    torch.testing.assert_close(logits, features @ source.fc.weight.T)  # unbiased: fc.bias is not added
    assert not torch.allclose(logits, source.fc(features))
    assert loaded.fingerprint() == hashlib.sha256(f"{digest}|{PREPROCESSING}".encode()).hexdigest()[:16]
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_weights_load_strictly(source, tmp_path, monkeypatch):
    state = {k: v for k, v in source.state_dict().items() if k != "fc.bias"}
    path = tmp_path / "weights.pth"
    monkeypatch.setattr(inception, "WEIGHTS_SHA256", write(state, path))
    with pytest.raises(RuntimeError, match="fc.bias"):
        Inception(InceptionConfig(weights=str(path)))


def assert_one_line_naming_the_file_and_how_to_give_it(message):
    assert "\n" not in message
    for part in (WEIGHTS_NAME, WEIGHTS_URL, "torch-fidelity", "eval.features.weights", WEIGHTS_ENV):
        assert part in message, part


def test_a_file_with_another_digest_is_refused(tmp_path, monkeypatch):
    path = tmp_path / WEIGHTS_NAME
    path.write_bytes(b"not the inception weights")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "ignored.pth"))  # the config's path wins
    with pytest.raises(PrakitError) as error:
        Inception(InceptionConfig(weights=str(path)))
    message = str(error.value)
    assert WEIGHTS_SHA256 in message and hashlib.sha256(b"not the inception weights").hexdigest() in message
    assert "95,628,359 bytes" in message and str(path) in message
    assert_one_line_naming_the_file_and_how_to_give_it(message)


def test_a_missing_file_is_a_clear_error(tmp_path, monkeypatch):
    absent = tmp_path / "absent.pth"
    monkeypatch.setenv(WEIGHTS_ENV, str(absent))  # read when the config gives no path
    with pytest.raises(PrakitError, match="does not exist") as error:
        Inception(InceptionConfig())
    assert str(absent) in str(error.value)
    assert_one_line_naming_the_file_and_how_to_give_it(str(error.value))


def test_no_path_at_all_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(PrakitError, match="none was given") as error:
        Inception(InceptionConfig())
    assert_one_line_naming_the_file_and_how_to_give_it(str(error.value))
    with pytest.raises(ValueError):
        InceptionConfig(weights="")


# -- preprocessing --------------------------------------------------------------------------------


def resize_reference(image, out_h, out_w):
    """TF1 ResizeBilinear(align_corners=False), one output pixel at a time: (H, W) -> (out_h, out_w)."""
    in_h, in_w = image.shape
    out = torch.empty(out_h, out_w, dtype=torch.float64)
    for i in range(out_h):
        for j in range(out_w):
            y, x = i * in_h / out_h, j * in_w / out_w  # no half-pixel offset
            y0, x0 = math.floor(y), math.floor(x)
            y1, x1 = min(y0 + 1, in_h - 1), min(x0 + 1, in_w - 1)
            fy, fx = y - y0, x - x0
            top = (1 - fx) * image[y0, x0] + fx * image[y0, x1]
            bottom = (1 - fx) * image[y1, x0] + fx * image[y1, x1]
            out[i, j] = (1 - fy) * top + fy * bottom
    return out


@pytest.mark.parametrize("in_size, out_size", [((5, 7), (13, 11)), ((17, 13), (6, 5))], ids=["up", "down"])
def test_resize_is_tensorflow1_bilinear(in_size, out_size):
    x = 255 * torch.rand(2, 3, *in_size, generator=torch.Generator().manual_seed(4))
    y = resize_bilinear_tf1(x, out_size)
    assert y.shape == (2, 3, *out_size) and y.dtype == torch.float32
    for b in range(2):
        for c in range(3):
            assert torch.allclose(y[b, c].double(), resize_reference(x[b, c].double(), *out_size), atol=1e-3)
    assert not torch.allclose(y, F.interpolate(x, out_size, mode="bilinear", align_corners=False), atol=1.0)


def test_resize_to_the_same_size_is_the_identity():
    x = 255 * torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(5))
    assert torch.equal(resize_bilinear_tf1(x, (299, 299)), x)


def test_forward_resizes_as_tensorflow1_and_scales_by_x_minus_128_over_128(net):
    images = random_images(2, 40, 30, 3, seed=10)  # not square: a transposed image would show
    seen, _ = capture(net, ["Conv2d_1a_3x3"], images)
    expected = (resize_bilinear_tf1(images.permute(0, 3, 1, 2).float(), (299, 299)) - 128) / 128
    assert torch.equal(seen["Conv2d_1a_3x3"][0], expected)
    seen, _ = capture(net, ["Conv2d_1a_3x3"], torch.full((1, 40, 30, 3), 128, dtype=torch.uint8))
    first = seen["Conv2d_1a_3x3"][0]
    assert first.shape == (1, 3, 299, 299) and torch.equal(first, torch.zeros_like(first))
    ends = net.preprocess(torch.tensor([0, 255], dtype=torch.uint8).reshape(2, 1, 1, 1))
    assert torch.equal(ends[:, 0, 0, 0], torch.tensor([-1.0, 127 / 128]))


@pytest.mark.skipif(not hasattr(torch.backends.cudnn, "conv"), reason="torch < 2.9: no per-backend precision")
def test_forward_computes_in_float32_not_tf32(net):
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.conv.fp32_precision, matmul.fp32_precision
    inside = []

    def record(module, args):
        inside.append((cudnn.conv.fp32_precision, matmul.fp32_precision))

    handle = net.Conv2d_1a_3x3.register_forward_pre_hook(record)
    try:
        net(random_images(1, 8, 8, 3))
    finally:
        handle.remove()
    assert inside == [("ieee", "ieee")]
    assert (cudnn.conv.fp32_precision, matmul.fp32_precision) == before


def test_bad_images_are_refused(net):
    with pytest.raises(PrakitError, match="uint8"):
        net(torch.zeros(1, 8, 8, 3))
    with pytest.raises(PrakitError, match="C 1 or 3"):
        net(torch.zeros(1, 8, 8, 4, dtype=torch.uint8))


# -- invariants -----------------------------------------------------------------------------------


def test_greyscale_equals_the_image_repeated_to_rgb(net):
    grey = random_images(1, 40, 50, 1, seed=6)
    for a, b in zip(net(grey), net(grey.expand(-1, -1, -1, 3))):
        torch.testing.assert_close(a, b)


def test_a_batch_equals_its_images_one_at_a_time(net):
    images = random_images(2, 32, 48, 3, seed=7)
    features, logits = net(images)
    alone = [net(images[i : i + 1]) for i in range(2)]
    torch.testing.assert_close(features, torch.cat([f for f, _ in alone]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, torch.cat([l for _, l in alone]), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(features[0], features[1])  # different images, different features


def test_forward_is_deterministic(net):
    images = random_images(1, 30, 30, 3, seed=8)
    first, again = net(images), net(images)
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_random_weights_give_live_features_and_their_own_fingerprint(net):
    features, logits = net(random_images(1, 50, 50, 3, seed=9))
    assert torch.isfinite(features).all() and torch.isfinite(logits).all()
    assert features.min() >= 0 and (features > 0).float().mean() > 0.2  # pool3 follows a ReLU
    assert features.std() > 1e-2 and logits.std() > 1e-2
    same, other = InceptionV3.with_random_weights(seed=0), InceptionV3.with_random_weights(seed=3)
    assert torch.equal(same.fc.weight, net.fc.weight) and same.fingerprint() == net.fingerprint()
    assert other.fingerprint() != net.fingerprint() and net.weights_id.startswith("random:")
    assert len(net.fingerprint()) == 16 and int(net.fingerprint(), 16) >= 0


def test_fingerprint_names_the_preprocessing(net, monkeypatch):
    before = net.fingerprint()
    monkeypatch.setattr(inception, "PREPROCESSING", PREPROCESSING + "-changed")
    assert net.fingerprint() != before


def test_the_network_stays_in_eval_mode(net):
    net.train()
    assert not any(module.training for module in net.modules())


class TestInceptionContract(FeatureNetworkContract):
    """The feature network contract, on random weights given as the published file would be."""

    config = InceptionConfig()

    @pytest.fixture(autouse=True)
    def weights(self, tmp_path_factory, monkeypatch):
        path = tmp_path_factory.getbasetemp() / "inception-contract.pth"
        digest = write(InceptionV3.with_random_weights(seed=0).state_dict(), path)
        monkeypatch.setattr(inception, "WEIGHTS_SHA256", digest)
        monkeypatch.setenv(WEIGHTS_ENV, str(path))
