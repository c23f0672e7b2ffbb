"""Classification heads: shapes, parameter counts, config round trips, gradients and errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.func import functional_call

from qubert.heads import LinearHead, MLPHead, QuantumHead, build_head, matched_mlp_head
from qubert.quantum import Circuit, RegisterTooLargeError, simulate

IN_FEATURES = 24


def make_heads():
    """One head of every kind and several circuit shapes, all (IN_FEATURES -> 3 classes)."""
    return {
        "linear": LinearHead(IN_FEATURES, 3),
        "linear_dropout": LinearHead(IN_FEATURES, 3, dropout=0.1),
        "mlp": MLPHead(IN_FEATURES, 3, hidden_sizes=(16, 8), dropout=0.1),
        "quantum": QuantumHead(IN_FEATURES, 3, n_qubits=4, n_layers=2, seed=0),
        "quantum_sel_zz": QuantumHead(
            IN_FEATURES, 3, circuit={"n_qubits": 3, "n_layers": 2, "ansatz": "strongly_entangling", "measurement": "zz"}, seed=0
        ),
        "quantum_probs": QuantumHead(
            IN_FEATURES, 3, circuit=Circuit(n_qubits=3, n_layers=1, encoding="rx", reupload=True, measurement="probs"), scaling="pi", seed=0
        ),
        "quantum_gates_frozen": QuantumHead(IN_FEATURES, 3, n_qubits=5, n_layers=3, strategy="gates", freeze_circuit=True, seed=0),
    }


HEAD_NAMES = list(make_heads())


@pytest.fixture(params=HEAD_NAMES)
def head(request):
    torch.manual_seed(0)
    return make_heads()[request.param]


def features(batch: int = 6, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, IN_FEATURES, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------- shapes and counts
def test_output_shape_and_dtype(head):
    for batch in (1, 7):
        logits = head(features(batch))
        assert logits.shape == (batch, 3)
        assert logits.dtype == torch.float32
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: LinearHead(384, 2), 384 * 2 + 2),
        (lambda: MLPHead(8, 2, hidden_sizes=(16, 4)), 8 * 16 + 16 + 16 * 4 + 4 + 4 * 2 + 2),
        (lambda: MLPHead(384, 2), 384 * 256 + 256 + 256 * 2 + 2),
        # pre-net 384*4+4, circuit 2*4, post-net 4*2+2
        (lambda: QuantumHead(384, 2, n_qubits=4, n_layers=2), 1540 + 8 + 10),
        (lambda: QuantumHead(384, 2, n_qubits=4, n_layers=2, freeze_circuit=True), 1540 + 10),
        (lambda: QuantumHead(384, 3, circuit={"n_qubits": 4, "n_layers": 3, "ansatz": "strongly_entangling"}), 1540 + 36 + 15),
        (lambda: QuantumHead(384, 2, circuit={"n_qubits": 3, "n_layers": 2, "measurement": "probs"}), 1155 + 6 + 8 * 2 + 2),
        (lambda: QuantumHead(384, 2, circuit={"n_qubits": 5, "measurement": "zz"}), 384 * 5 + 5 + 10 + 4 * 2 + 2),
    ],
)
def test_trainable_params(make, expected):
    head = make()
    assert head.trainable_params == expected
    assert head.trainable_params == sum(p.numel() for p in head.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------- config round trip
def test_config_round_trip_gives_the_same_head(head):
    config = head.config()
    assert config["type"] == head.head_type and config["in_features"] == IN_FEATURES and config["n_classes"] == 3
    restored_config = json.loads(json.dumps(config))  # a config must survive being written to disk
    rebuilt = build_head(restored_config)
    assert type(rebuilt) is type(head)
    assert rebuilt.config() == config
    assert rebuilt.trainable_params == head.trainable_params
    rebuilt.load_state_dict(head.state_dict())
    head.eval()
    rebuilt.eval()
    x = features()
    torch.testing.assert_close(rebuilt(x), head(x), rtol=0, atol=0)


def test_quantum_config_keeps_every_setting():
    circuit = Circuit(n_qubits=3, n_layers=1, encoding="h_rz", ansatz="basic_entangler", rotation="rx", init="identity")
    head = QuantumHead(10, 4, circuit=circuit, scaling="tanh_pi", strategy="gates", freeze_circuit=True)
    rebuilt = build_head(head.config())
    assert rebuilt.circuit == circuit
    assert (rebuilt.scaling, rebuilt.strategy, rebuilt.freeze_circuit) == ("tanh_pi", "gates", True)
    assert not rebuilt.q_weights.requires_grad


def test_seed_makes_circuit_weights_reproducible():
    config = QuantumHead(8, 2, n_qubits=3).config()
    config["circuit"]["init"] = "uniform"
    a, b, c = build_head(config, seed=3), build_head(config, seed=3), build_head(config, seed=4)
    assert torch.equal(a.q_weights, b.q_weights) and not torch.equal(a.q_weights, c.q_weights)


# ---------------------------------------------------------------------------- gradients
def test_gradients_reach_the_features(head):
    """An encoder upstream of the head must get gradients through every kind of head."""
    x = features().requires_grad_(True)
    head(x).logsumexp(-1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in head.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_freeze_circuit_trains_only_the_dressing():
    head = QuantumHead(IN_FEATURES, 2, n_qubits=4, n_layers=2, freeze_circuit=True, seed=1)
    before = head.q_weights.detach().clone()
    optimizer = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=0.1)
    x = features().requires_grad_(True)
    torch.nn.functional.cross_entropy(head(x), torch.tensor([0, 1, 0, 1, 0, 1])).backward()
    assert head.q_weights.grad is None
    for layer in (head.pre_net, head.post_net):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    optimizer.step()
    assert torch.equal(head.q_weights, before)


def test_circuit_weights_train_when_not_frozen():
    head = QuantumHead(IN_FEATURES, 2, n_qubits=4, n_layers=2, seed=1)
    torch.nn.functional.cross_entropy(head(features()), torch.tensor([0, 1, 0, 1, 0, 1])).backward()
    assert head.q_weights.grad is not None and head.q_weights.grad.abs().sum() > 0


GRADCHECK_HEADS = [
    ({"n_qubits": 3, "n_layers": 2}, ("analytic", "fused", "gates")),
    ({"n_qubits": 7, "n_layers": 1, "measurement": "zz"}, ("analytic",)),
    ({"n_qubits": 3, "n_layers": 1, "encoding": "rx", "ansatz": "strongly_entangling", "measurement": "zz"}, ("fused", "gates")),
    ({"n_qubits": 2, "n_layers": 2, "ansatz": "basic_entangler", "rotation": "rz", "measurement": "probs", "reupload": True}, ("fused", "gates")),
]


@pytest.mark.parametrize("circuit, strategy", [(c, s) for c, strategies in GRADCHECK_HEADS for s in strategies])
def test_gradcheck_double_precision_head(circuit, strategy):
    torch.manual_seed(0)
    head = QuantumHead(5, 2, circuit=circuit, strategy=strategy, scaling="tanh_pi", seed=0).double()
    names = [name for name, _ in head.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in head.parameters())
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)

    def run(x, *params):
        return functional_call(head, dict(zip(names, params)), (x,))

    assert run(x, *params).dtype == torch.float64
    assert torch.autograd.gradcheck(run, (x, *params))


# ---------------------------------------------------------------------------- the quantum head's pieces
def test_scalings_map_pre_activations_to_angles():
    x = features(20)
    torch.manual_seed(0)
    head = QuantumHead(IN_FEATURES, 2, n_qubits=3, scaling="none")
    z = head.pre_net(x)
    torch.testing.assert_close(head.angles(x), z)
    for scaling, expected in [("tanh_pi_2", torch.tanh(z) * math.pi / 2), ("tanh_pi", torch.tanh(z) * math.pi), ("pi", z * math.pi)]:
        head.scaling = scaling
        torch.testing.assert_close(head.angles(x), expected)
    head.scaling = "tanh_pi_2"
    assert head.angles(x * 100).abs().max() <= math.pi / 2


def test_measure_is_the_circuit_on_the_angles():
    head = QuantumHead(IN_FEATURES, 2, circuit={"n_qubits": 3, "measurement": "zz"}, seed=0)
    x = features()
    torch.testing.assert_close(head.measure(x), simulate(head.circuit, head.angles(x), head.q_weights))
    assert head.measure(x).shape == (6, 2)


def test_strategies_give_the_same_logits():
    heads = [QuantumHead(IN_FEATURES, 2, n_qubits=5, n_layers=2, strategy=s, seed=0) for s in ("auto", "analytic", "fused", "gates")]
    for h in heads[1:]:
        h.load_state_dict(heads[0].state_dict())
    x = features()
    for h in heads[1:]:
        torch.testing.assert_close(h(x), heads[0](x), atol=1e-5, rtol=0)


def test_repr_shows_the_circuit():
    text = repr(QuantumHead(8, 2, n_qubits=2, n_layers=1))
    assert "RY(x0)" in text and "RY(w1)" in text


# ---------------------------------------------------------------------------- matched MLP
@pytest.mark.parametrize("in_features", [16, 384, 768])
@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize(
    "circuit", [{"n_qubits": 2}, {"n_qubits": 4}, {"n_qubits": 8}, {"n_qubits": 12, "n_layers": 3, "ansatz": "strongly_entangling"}, {"n_qubits": 4, "measurement": "probs"}]
)
def test_matched_mlp_has_about_as_many_parameters(in_features, n_classes, circuit):
    quantum = QuantumHead(in_features, n_classes, circuit=circuit)
    mlp = matched_mlp_head(quantum)
    assert isinstance(mlp, MLPHead) and len(mlp.hidden_sizes) == 1
    assert (mlp.in_features, mlp.n_classes) == (in_features, n_classes)
    target = quantum.trainable_params
    (width,) = mlp.hidden_sizes
    gap = abs(mlp.trainable_params - target)
    # No other hidden width comes closer ...
    for other in (width - 1, width + 1):
        if other >= 1:
            assert gap <= abs(MLPHead(in_features, n_classes, hidden_sizes=(other,)).trainable_params - target)
    # ... and at encoder widths the match is within a few percent.
    if in_features >= 384:
        assert gap <= 0.05 * target, (mlp.trainable_params, target)


def test_matched_mlp_for_a_classical_head_and_bad_depth():
    linear = LinearHead(384, 2)
    assert matched_mlp_head(linear).hidden_sizes == (2,)
    with pytest.raises(ValueError, match="one hidden layer"):
        matched_mlp_head(linear, hidden_layers=2)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LinearHead(0, 2), r"in_features must be >= 1, got 0"),
        (lambda: MLPHead(8, 1), r"n_classes must be >= 2, got 1"),
        (lambda: MLPHead(8, 2, hidden_sizes=(4, 0)), r"hidden sizes must be >= 1"),
        (lambda: QuantumHead(8, 2, scaling="sigmoid"), r"unknown scaling 'sigmoid'; expected one of tanh_pi_2"),
        (lambda: QuantumHead(8, 2, strategy="fast"), r"unknown strategy 'fast'"),
        (lambda: QuantumHead(8, 2, circuit={"n_qubits": 3, "encoding": "rx"}, strategy="analytic"), r"strategy 'analytic' needs .*encoding rx"),
        (lambda: QuantumHead(8, 2, n_qubits=0), r"n_qubits must be a positive integer"),
        (lambda: QuantumHead(8, 2, n_layers=-1), r"n_layers \(circuit depth\) must be a non-negative integer"),
        (lambda: QuantumHead(8, 2, circuit={"n_qubits": 3, "layers": 2}), r"unknown circuit field\(s\): layers"),
        (lambda: QuantumHead(8, 2, circuit={"n_qubits": 3, "ansatz": "qaoa"}), r"unknown ansatz 'qaoa'"),
        (lambda: build_head({"type": "transformer", "in_features": 8, "n_classes": 2}), r"unknown head type 'transformer'"),
        (lambda: build_head({"in_features": 8, "n_classes": 2}), r"unknown head type None"),
    ],
)
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_feature_width_is_refused(head):
    with pytest.raises(ValueError, match=rf"expects features of shape \(batch, {IN_FEATURES}\), got \(2, 5\)"):
        head(torch.zeros(2, 5))


def test_quantum_head_too_large_for_memory_is_refused():
    head = QuantumHead(8, 2, n_qubits=40, n_layers=1)
    with pytest.raises(RegisterTooLargeError, match="GiB"):
        head(torch.zeros(64, 8))


# ---------------------------------------------------------------------------- NaN and inf
def _poison(tensor: torch.Tensor, value: float, *positions) -> None:
    with torch.no_grad():
        for position in positions:
            tensor[position] = value


NON_FINITE_CASES = {
    # name: (make head, corrupt(head, x) -> x, message)
    "nan_features": (None, lambda h, x: _poison(x, math.nan, (1, 0), (4, 2)), r"NaN or inf in 2 of 6 rows of its input features; check"),
    "inf_features": (None, lambda h, x: _poison(x, math.inf, (0, 3)), r"in 1 of 6 rows of its input features"),
    "nan_circuit_weights": ("quantum", lambda h, x: _poison(h.q_weights, math.nan, (0, 1)), r"in 1 of 8 circuit weights \(q_weights\); training diverged"),
    "inf_pre_net_weight": ("quantum", lambda h, x: _poison(h.pre_net.weight, -math.inf, (0, 0)), r"input layer weights \(pre_net.weight\)"),
    "nan_pre_net_bias": ("quantum_sel_zz", lambda h, x: _poison(h.pre_net.bias, math.nan, 0), r"input layer biases \(pre_net.bias\)"),
    "overflowing_angles": ("quantum_probs", lambda h, x: (h.pre_net.weight.data.fill_(torch.finfo(x.dtype).max / 10), x.fill_(1)), r"6 of 6 rows of its encoding angles although features and weights are finite"),
}
NON_FINITE_PARAMS = [
    pytest.param(head_name, corrupt, message, id=f"{case}-{head_name}")
    for case, (only, corrupt, message) in NON_FINITE_CASES.items()
    for head_name in ([only] if only else HEAD_NAMES)
]


@pytest.mark.parametrize("shots", [None, 64], ids=["exact", "shots"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("head_name, corrupt, message", NON_FINITE_PARAMS)
def test_nan_or_inf_reaching_a_head_is_refused_with_one_line(head_name, corrupt, message, dtype, shots):
    from qubert.heads import NonFiniteError

    head = make_heads()[head_name].to(dtype)
    if shots is not None:
        if head.head_type != "quantum":
            pytest.skip("shots are a quantum-head option")
        head.set_execution(shots=shots, seed=0)
    x = features(dtype=dtype)
    corrupt(head, x)
    with pytest.raises(NonFiniteError, match=message) as info:
        head(x)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"{type(head).__name__} got NaN or inf in ")


def test_finite_features_whose_sum_overflows_are_accepted():
    head = make_heads()["quantum"]
    x = torch.full((6, IN_FEATURES), torch.finfo(torch.float32).max / 2)  # finite, but their sum is inf
    assert torch.isfinite(head(x)).all()
