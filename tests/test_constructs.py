"""Architectural constructs, each an example in examples/, checked two ways.

1. onnxruntime runs the compiled model to the NumPy reference's numbers.
2. The output equals a computation written here by hand in plain NumPy (float64) from
   the same weights: no reference implementation exists in this repository for these
   models, so the test states the formula itself. The weights are the initializers'
   values plus seeded noise, so that zero biases and unit norm weights matter.

The constructs:
- examples/se_mobile.arch: depthwise-separable convolution with squeeze-and-excitation;
- examples/alibi.arch: causal attention with ALiBi biases (checked against BLOOM's
  `build_alibi_tensor` when torch and transformers are installed);
- examples/t5_bias.arch: T5's relative position buckets and bias (checked against
  transformers' T5LayerSelfAttention, bound with its own state_dict);
- examples/swin_stages.arch: a two-stage model with Swin patch merging between stages
  (its merge order checked against transformers' SwinPatchMerging);
- examples/looped.arch: one weight-tied block applied N times (`repeat N shared`).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import compile_to_file
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BACKENDS_TOL = dict(rtol=1e-5, atol=1e-5)   # onnxruntime vs the NumPy reference
HAND_TOL = 1e-4                               # max abs, either backend vs the hand computation


# ---- running an example ----------------------------------------------------------------

def build(name: str, sets: dict[str, str] | None = None, weights: str | None = None, noise: float = 0.05):
    """The example's graph and its parameters: bound from `weights`, or initialised and
    perturbed by seeded noise."""
    graph = load_graph(str(EXAMPLES / f"{name}.arch"), SourceCache(), dict(sets or {}))
    params = load_params(graph, weights, seed=0)
    if weights is None and noise:
        rng = np.random.default_rng(1)
        params = {k: (v + noise * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in params.items()}
    return graph, params


def run_both(graph, params, inputs: dict[str, np.ndarray], tmp_path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Both backends' outputs, {"onnx": {...}, "numpy": {...}}, after checking that they agree."""
    path = tmp_path / f"{graph.name}.onnx"
    compile_to_file(graph, params, str(path))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = {"onnx": dict(zip(names, sess.run(names, inputs))), "numpy": run_graph(graph, params, inputs)}
    assert sorted(got["onnx"]) == sorted(got["numpy"])
    for k, want in got["numpy"].items():
        assert np.all(np.isfinite(want)), k
        np.testing.assert_allclose(got["onnx"][k], want, err_msg=k, **BACKENDS_TOL)
    return got


def check_hand(got: dict[str, dict[str, np.ndarray]], want: dict[str, np.ndarray], tol: float = HAND_TOL) -> dict[str, float]:
    """Every output of both backends within `tol` (max abs) of the hand computation."""
    errors = {}
    for backend, outs in got.items():
        for k, w in want.items():
            assert outs[k].shape == w.shape, f"{backend}:{k}: shape {outs[k].shape}, by hand {w.shape}"
            errors[f"{backend}:{k}"] = float(np.max(np.abs(outs[k].astype(np.float64) - w)))
    scale = max(float(np.max(np.abs(w))) for w in want.values())
    print(f"max abs from the hand computation (outputs up to {scale:.2g}): "
          + " ".join(f"{k}={v:.1e}" for k, v in errors.items()))
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"max abs difference from the hand computation over {tol}: {bad}"
    return errors


def f64(params) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for k, v in params.items()}


# ---- plain NumPy building blocks ---------------------------------------------------------

_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def relu(x):
    return np.maximum(x, 0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def layernorm(x, weight, bias, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * weight + bias


def rmsnorm(x, weight, eps=1e-6):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * weight


def linear(x, weight, bias=None):
    """torch.nn.Linear: weight [out, in]."""
    y = x @ weight.T
    return y if bias is None else y + bias


def conv2d_same(x, weight, bias, groups=1):
    """Stride-1 convolution with zero padding k // 2, NCHW, weight [out, in/groups, k, k]."""
    b, c, h, w = x.shape
    out_ch, k = weight.shape[0], weight.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cg, og = c // groups, out_ch // groups
    out = np.zeros((b, out_ch, h, w))
    for g in range(groups):
        xs, ws = xp[:, g * cg:(g + 1) * cg], weight[g * og:(g + 1) * og]
        for i in range(k):
            for j in range(k):
                out[:, g * og:(g + 1) * og] += np.einsum("bchw,oc->bohw", xs[:, :, i:i + h, j:j + w], ws[:, :, i, j])
    return out + bias[None, :, None, None]


def mha(x, w_qkv, b_qkv, w_out, b_out, bias=None):
    """Multi-head self-attention over the second-to-last axis of x [..., t, e];
    w_qkv [3, heads, head, e], b_qkv [3, heads, head], w_out [e, heads, head]; `bias`
    [..., heads, t, t] is added to the scaled scores. Biases may be None."""
    qkv = np.einsum("...te,khde->k...thd", x, w_qkv)                  # [3, ..., t, heads, head]
    if b_qkv is not None:
        qkv = qkv + b_qkv.reshape(3, *[1] * (x.ndim - 1), *b_qkv.shape[1:])
    q, k, v = qkv
    s = np.einsum("...qhd,...khd->...hqk", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        s = s + bias
    o = np.einsum("...hqk,...khd->...qhd", softmax(s), v)
    y = np.einsum("...qhd,ehd->...qe", o, w_out)
    return y if b_out is None else y + b_out


# ---- depthwise-separable convolution with squeeze-and-excitation -----------------------------

def test_depthwise_separable_with_squeeze_excitation(tmp_path):
    graph, params = build("se_mobile")
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 16)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)

    p = f64(params)

    def block(x, pre):
        c = x.shape[1]
        y = relu(conv2d_same(x, p[pre + "depthwise.weight"], p[pre + "depthwise.bias"], groups=c))
        y = conv2d_same(y, p[pre + "pointwise.weight"], p[pre + "pointwise.bias"])
        s = y.mean(axis=(2, 3))                                        # squeeze: [b, c]
        s = relu(linear(s, p[pre + "se.fc1.weight"], p[pre + "se.fc1.bias"]))
        s = sigmoid(linear(s, p[pre + "se.fc2.weight"], p[pre + "se.fc2.bias"]))
        return y * s[:, :, None, None]                                 # excite

    y = block(x.astype(np.float64), "block1.")
    y = y + block(y, "block2.sep.")
    want = linear(y.mean(axis=(2, 3)), p["classifier.weight"], p["classifier.bias"])
    assert p["block1.depthwise.weight"].shape == (16, 1, 3, 3)        # one filter per channel
    assert p["block1.se.fc1.weight"].shape == (6, 24)                  # 24 channels squeezed by 4
    check_hand(got, {"output": want})


# ---- ALiBi ---------------------------------------------------------------------------------

def alibi_by_hand(heads: int, seq: int) -> np.ndarray:
    """[heads, query, key]: slope_h * (key - query), slope_h = 2^(-8 (h + 1) / heads)."""
    slopes = 2.0 ** (-8 * np.arange(1, heads + 1) / heads)
    return slopes[:, None, None] * (np.arange(seq)[None, None, :] - np.arange(seq)[None, :, None])


@pytest.mark.parametrize("seq", [1, 9])
def test_alibi_attention(seq, tmp_path):
    graph, params = build("alibi")
    x = np.random.default_rng(seq).standard_normal((2, seq, 32)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)

    p = f64(params)
    heads = 4
    bias = alibi_by_hand(heads, seq)
    causal = np.where(np.arange(seq)[None, :] > np.arange(seq)[:, None], -np.inf, 0.0)
    xn = layernorm(x.astype(np.float64), p["ln.weight"], p["ln.bias"])
    y = x + mha(xn, p["attn.w_qkv"], None, p["attn.w_out"], None, bias + causal)
    check_hand(got, {"y": y, "alibi": bias})


@pytest.mark.parametrize("heads", [4, 8])
def test_alibi_matches_bloom(heads, tmp_path):
    """BLOOM's build_alibi_tensor gives slope_h * key_position, the same bias up to a
    constant per query row (softmax ignores it): ours - BLOOM's = -slope_h * query.
    BLOOM's slopes equal 2^(-8 (h + 1) / heads) when `heads` is a power of two (for other
    head counts it interleaves a second geometric sequence, which this example does not)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    seq = 11
    graph, params = build("alibi", {"heads": str(heads)})
    x = np.random.default_rng(0).standard_normal((2, seq, 32)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)
    bloom = build_alibi_tensor(torch.ones(2, seq, dtype=torch.long), heads, torch.float32)
    bloom = bloom.reshape(2, heads, 1, seq).numpy().astype(np.float64)
    for backend in got:
        ours = got[backend]["alibi"].astype(np.float64)                      # [heads, seq, key]
        slopes = ours[:, 0, 1]                                               # query 0, key 1
        np.testing.assert_allclose(slopes, bloom[0, :, 0, 1], rtol=1e-7, err_msg=backend)
        shift = slopes[:, None, None] * np.arange(seq)[None, :, None]        # slope * query
        for b in range(2):
            np.testing.assert_allclose(ours + shift, np.broadcast_to(bloom[b], ours.shape), atol=1e-5,
                                       err_msg=backend)


# ---- T5 relative position buckets ---------------------------------------------------------

def t5_bucket_by_hand(query: int, key: int, buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """T5's bidirectional bucket of key - query, written out with Python floats: keys after
    the query use the upper half; |distance| < exact has its own bucket; larger distances
    get exact + floor(log(d / exact) / log(max_distance / exact) * (half - exact)), at most
    half - 1."""
    half = buckets // 2
    exact = half // 2
    out = np.zeros((query, key), dtype=np.int64)
    for i in range(query):
        for j in range(key):
            rel = j - i
            d = abs(rel)
            if d < exact:
                bucket = d
            else:
                bucket = min(exact + int(math.log(d / exact) / math.log(max_distance / exact) * (half - exact)), half - 1)
            out[i, j] = bucket + (half if rel > 0 else 0)
    return out


def t5_layer_by_hand(x: np.ndarray, p: dict[str, np.ndarray], bucket: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bias = p["SelfAttention.table"][bucket].transpose(2, 0, 1)                 # [heads, q, k]
    xn = rmsnorm(x, p["layer_norm.weight"], 1e-6)
    q = np.einsum("bse,hde->bshd", xn, p["SelfAttention.w_q"])
    k = np.einsum("bse,hde->bshd", xn, p["SelfAttention.w_k"])
    v = np.einsum("bse,hde->bshd", xn, p["SelfAttention.w_v"])
    a = softmax(np.einsum("bqhd,bkhd->bhqk", q, k) + bias)                     # not scaled
    o = np.einsum("bhqk,bkhd->bqhd", a, v)
    return x + np.einsum("bqhd,ehd->bqe", o, p["SelfAttention.w_o"]), bias


def test_t5_bucket_by_hand_covers_every_bucket():
    b = t5_bucket_by_hand(1, 300)[0]           # query 0: distances 0 .. 299 after it
    assert list(b[:8]) == [0] + list(range(17, 24))
    assert sorted(set(t5_bucket_by_hand(300, 1)[:, 0])) == list(range(16))
    assert set(b[1:]) == set(range(17, 32))


@pytest.mark.parametrize("seq", [7, 150])       # 150: distances past max_distance (128)
def test_t5_relative_position_bias(seq, tmp_path):
    graph, params = build("t5_bias")
    x = np.random.default_rng(seq).standard_normal((2, seq, 32)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)
    y, bias = t5_layer_by_hand(x.astype(np.float64), f64(params), t5_bucket_by_hand(seq, seq))
    check_hand(got, {"y": y, "position_bias": bias})


def test_t5_matches_transformers(tmp_path):
    """transformers' T5LayerSelfAttention (encoder, with the relative attention bias): its
    state_dict binds the example as it is, and the layer's output and position bias are
    the example's; its bucket function is the hand-written one, distances up to 199."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file
    from transformers.models.t5.modeling_t5 import T5Attention, T5LayerSelfAttention

    seq = 200
    rel = torch.arange(seq)[None, :] - torch.arange(seq)[:, None]
    hf_bucket = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=32, max_distance=128)
    np.testing.assert_array_equal(hf_bucket.numpy(), t5_bucket_by_hand(seq, seq))

    config = transformers.T5Config(d_model=32, d_kv=8, num_heads=4, relative_attention_num_buckets=32,
                                   relative_attention_max_distance=128, dropout_rate=0.0,
                                   layer_norm_epsilon=1e-6, is_decoder=False)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    layer = T5LayerSelfAttention(config, has_relative_attention_bias=True).eval()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name == "layer_norm.weight":
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif "relative_attention_bias" in name:
                p.copy_(torch.randn_like(p))                       # scores of order 1
            else:
                p.copy_(0.3 * torch.randn_like(p))                 # q, k, v, o: [out, in], width 32
    save_file({k: v.contiguous() for k, v in layer.state_dict().items()}, str(tmp_path / "t5.safetensors"))

    x = np.random.default_rng(0).standard_normal((2, seq, 32)).astype(np.float32)
    with torch.no_grad():
        y_hf, bias_hf, _ = layer(torch.from_numpy(x))
    graph, params = build("t5_bias", weights=str(tmp_path / "t5.safetensors"))
    got = run_both(graph, params, {"x": x}, tmp_path)
    check_hand(got, {"y": y_hf.numpy().astype(np.float64), "position_bias": bias_hf[0].numpy().astype(np.float64)})


# ---- two stages with Swin patch merging ----------------------------------------------------

def patch_merging_by_hand(x: np.ndarray) -> np.ndarray:
    """Swin's fold of 2x2 neighbours into channels, [b, h, w, c] -> [b, h/2, w/2, 4c]."""
    return np.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1)


def window_attention_by_hand(x: np.ndarray, p: dict[str, np.ndarray], pre: str, window: int) -> np.ndarray:
    """Self-attention within each window x window window of x [b, h, w, c]."""
    b, h, w, c = x.shape
    t = x.reshape(b, h // window, window, w // window, window, c).transpose(0, 1, 3, 2, 4, 5)
    t = t.reshape(b, h // window, w // window, window * window, c)              # the windows' tokens
    o = mha(t, p[pre + "w_qkv"], p[pre + "b_qkv"], p[pre + "w_proj"], p[pre + "b_proj"])
    o = o.reshape(b, h // window, w // window, window, window, c).transpose(0, 1, 3, 2, 4, 5)
    return o.reshape(b, h, w, c)


def swin_by_hand(image: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    b, c, hh, ww = image.shape
    w = p["w_patch"]                                                   # [c1, chan, 4, 4]
    patches = image.reshape(b, c, hh // 4, 4, ww // 4, 4)
    x = np.einsum("bcyixj,ocij->byxo", patches, w) + p["b_patch"]     # stride-4 conv, channels last
    x = layernorm(x, p["patch_embed.norm.weight"], p["patch_embed.norm.bias"])

    def block(x, pre):
        x = x + window_attention_by_hand(layernorm(x, p[pre + "norm1.weight"], p[pre + "norm1.bias"]), p,
                                         pre + "attn.", 4)
        h = layernorm(x, p[pre + "norm2.weight"], p[pre + "norm2.bias"])
        h = gelu(linear(h, p[pre + "mlp.fc1.weight"], p[pre + "mlp.fc1.bias"]))
        return x + linear(h, p[pre + "mlp.fc2.weight"], p[pre + "mlp.fc2.bias"])

    for i in range(2):
        x = block(x, f"stage1.{i}.")
    x = patch_merging_by_hand(x)
    x = linear(layernorm(x, p["downsample.norm.weight"], p["downsample.norm.bias"]), p["downsample.reduction.weight"])
    for i in range(2):
        x = block(x, f"stage2.{i}.")
    x = layernorm(x, p["norm.weight"], p["norm.bias"])
    return linear(x.mean(axis=(1, 2)), p["head.weight"], p["head.bias"])


def test_swin_two_stages_with_patch_merging(tmp_path):
    graph, params = build("swin_stages")
    assert params["downsample.reduction.weight"].shape == (32, 64)     # 4 * 16 -> 2 * 16
    image = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = run_both(graph, params, {"image": image}, tmp_path)
    check_hand(got, {"output": swin_by_hand(image.astype(np.float64), f64(params))})


def test_swin_patch_merging_order_is_transformers():
    """The hand-written merge above (and so the example's `(tw, th, c) -> c4`) is the
    order of transformers' SwinPatchMerging."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.swin.modeling_swin import SwinPatchMerging

    torch.manual_seed(0)
    layer = SwinPatchMerging(dim=16).eval()
    x = torch.randn(2, 8, 8, 16)
    with torch.no_grad():
        want = layer(x.reshape(2, 64, 16), (8, 8)).numpy()
    sd = {k: v.numpy().astype(np.float64) for k, v in layer.state_dict().items()}
    mine = linear(layernorm(patch_merging_by_hand(x.numpy().astype(np.float64)), sd["norm.weight"], sd["norm.bias"]),
                  sd["reduction.weight"])
    np.testing.assert_allclose(mine.reshape(2, 16, 32), want, atol=1e-5)


# ---- weight-tied looping --------------------------------------------------------------------

def looped_block_by_hand(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    h = layernorm(x, p["layer.norm1.weight"], p["layer.norm1.bias"])
    x = x + mha(h, p["layer.attn.w_qkv"], p["layer.attn.b_qkv"], p["layer.attn.w_out"], p["layer.attn.b_out"])
    h = layernorm(x, p["layer.norm2.weight"], p["layer.norm2.bias"])
    h = gelu(linear(h, p["layer.mlp.fc1.weight"], p["layer.mlp.fc1.bias"]))
    return x + linear(h, p["layer.mlp.fc2.weight"], p["layer.mlp.fc2.bias"])


def param_count(graph) -> int:
    return sum(int(np.prod([a.size.value for a in spec.type.axes])) for spec in graph.params.values())


def test_looped_block_has_one_blocks_parameters():
    embed, hidden = 32, 128
    one_block = (2 * embed                              # norm1
                 + 3 * embed * embed + 3 * embed        # qkv
                 + embed * embed + embed                # proj
                 + 2 * embed                            # norm2
                 + embed * hidden + hidden + hidden * embed + embed)   # mlp
    graphs = {steps: load_graph(str(EXAMPLES / "looped.arch"), SourceCache(), {"steps": str(steps)})
              for steps in (1, 6, 12)}
    names = {steps: sorted(g.params) for steps, g in graphs.items()}
    assert names[1] == names[6] == names[12]
    assert {param_count(g) for g in graphs.values()} == {one_block}


def test_looped_equals_one_block_applied_n_times(tmp_path):
    steps = 6
    graph, params = build("looped", {"steps": str(steps)})
    x = np.random.default_rng(0).standard_normal((2, 9, 32)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)

    # The one-step model, run `steps` times by the NumPy reference with the same weights.
    one, _ = build("looped", {"steps": "1"})
    y = x
    for _ in range(steps):
        y = run_graph(one, params, {"x": y})["output"]
    np.testing.assert_allclose(got["numpy"]["output"], y, rtol=1e-5, atol=1e-5)

    # And by hand.
    p = f64(params)
    want = x.astype(np.float64)
    for _ in range(steps):
        want = looped_block_by_hand(want, p)
    check_hand(got, {"output": want})
