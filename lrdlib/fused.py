"""Hand-written forward/backward for the two memory-bound pieces of the seed model's step.

The seed model's sequences have three positions, so its attention is 2048 (batch × heads)
tiny 3×3 problems and its norms are many narrow reductions. Written op by op, autograd spends
most of the time on bookkeeping passes (zero-filled slice gradients, size-3 softmaxes along
the innermost axis, broadcasts). The two ``autograd.Function``s below compute the same maths
with fewer, larger passes:

* ``short_attention(q, k, v, heads)`` = softmax(q kᵀ/√d_h) v per head, no mask.
  Per batch element, all heads at once as one matrix product: with q reshaped to
  (T_q·H, d_h) and k to (T·H, d_h), S = q kᵀ holds every (query, head) × (key, head) dot
  product; the head-diagonal blocks are the scores. After the softmax over keys, the
  probabilities are put back on the head diagonal of a zero (T_q·H, T·H) matrix A and the
  output is A v. Backward uses the same two shapes:
      ∂v = Aᵀ ∂o,   ∂a = diag_h(∂o vᵀ),   ∂s = a ⊙ (∂a − Σ_j a ∂a),
      ∂q = ∂S k,    ∂k = ∂Sᵀ q            (∂S = ∂s/√d_h on the head diagonal).
  The off-diagonal products cost 4× the needed multiply-adds on numbers this small
  (≈ 5 MFLOP per call): far cheaper than the passes they replace.
* ``rms_norm(x, g, scale, eps)`` = normalize(x)·scale·g, as ``F.normalize(x, dim=-1) *
  (scale·g)``, with r = 1/max(‖x‖, eps):
      ∂x = r·(w ⊙ ∂y − x̂ ⟨w ⊙ ∂y, x̂⟩)    (x̂ = r x, w = scale·g; the projection term
                                           vanishes where ‖x‖ < eps, as in F.normalize),
      ∂g = scale · Σ_rows ∂y ⊙ x̂.

* ``gather_rows(table, index)`` = ``F.embedding(index, table)``. Eagerly it *is* that call.
  Under ``torch.compile`` its backward (the scatter-add ∂table[r] = Σ_{index = r} ∂out) is an
  opaque custom op running ATen's own CPU/CUDA kernel: inductor's generated scatter uses
  atomic adds across threads, which on 2 CPU threads cost ~3 ms a step (more than all the
  other fused kernels together) and make the sum order, hence the rounding, vary run to run.

All match autograd's own gradients (``tests/test_fused.py``: float64 ``gradcheck`` and
float32 agreement with the op-by-op versions); ``benchmarks/step_time.py`` measures the gain.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


# ----------------------------------------------------------------------------- attention
def _head_diagonal(M: Tensor, Tq: int, T: int, H: int) -> Tensor:
    """The (B, Tq, T, H) head-diagonal view of a (B, Tq·H, T·H) matrix."""
    return torch.diagonal(M.view(M.shape[0], Tq, H, T, H), dim1=2, dim2=4)


def _on_head_diagonal(a: Tensor) -> Tensor:
    """(B, Tq, T, H) → (B, Tq·H, T·H): a[b, i, j, h] at row (i, h), column (j, h); zeros elsewhere."""
    B, Tq, T, H = a.shape
    full = a.new_zeros(B, Tq, H, T, H)
    torch.diagonal(full, dim1=2, dim2=4).copy_(a)
    return full.view(B, Tq * H, T * H)


class _ShortAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
        B, Tq, d = q.shape
        T, H = k.shape[1], heads
        dh = d // H
        qf, kf, vf = q.reshape(B, Tq * H, dh), k.reshape(B, T * H, dh), v.reshape(B, T * H, dh)
        s = _head_diagonal(torch.bmm(qf, kf.transpose(1, 2)), Tq, T, H) * dh ** -0.5  # (B, Tq, T, H)
        a = (s - s.amax(2, keepdim=True)).exp_()
        a = a.div_(a.sum(2, keepdim=True))                                            # softmax over keys
        A = _on_head_diagonal(a)
        ctx.save_for_backward(qf, kf, vf, a, A)
        ctx.heads = H
        return torch.bmm(A, vf).view(B, Tq, d)

    @staticmethod
    def backward(ctx, go: Tensor):
        qf, kf, vf, a, A = ctx.saved_tensors
        B, Tq, T, H = a.shape
        d = qf.shape[-1] * H
        go = go.reshape(B, Tq * H, -1)
        gv = torch.bmm(A.transpose(1, 2), go)
        ga = _head_diagonal(torch.bmm(go, vf.transpose(1, 2)), Tq, T, H)
        gs = a * (ga - (a * ga).sum(2, keepdim=True))
        gS = _on_head_diagonal(gs.mul_(qf.shape[-1] ** -0.5))
        gq = torch.bmm(gS, kf)
        gk = torch.bmm(gS.transpose(1, 2), qf)
        return gq.view(B, Tq, d), gk.view(B, T, d), gv.view(B, T, d), None


def short_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """softmax(q kᵀ/√d_h) v for each of ``heads`` heads, no mask, heads side by side in the last
    axis (as in ``view(B, T, H, d_h)``): q (B, T_q, d), k and v (B, T, d) → (B, T_q, d).

    Meant for short sequences (the cost of its head-block products grows as (T·H)²)."""
    if q.ndim != 3 or k.shape != v.shape or k.ndim != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: expected q (B, Tq, d) "
                         "and k, v (B, T, d)")
    if q.shape[2] % heads:
        raise ValueError(f"heads={heads} must divide the width d={q.shape[2]}")
    return _ShortAttention.apply(q, k, v, heads)


# ----------------------------------------------------------------------------- RMSNorm
class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, g: Tensor, scale: float, eps: float) -> Tensor:
        n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        r = n.clamp_min(eps).reciprocal_()
        w = g * scale
        ctx.save_for_backward(x, r, w, n > eps)
        ctx.scale, ctx.g_shape = scale, g.shape
        return torch.mul(x, r).mul_(w)

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, r, w, big = ctx.saved_tensors
        gg = None
        if ctx.needs_input_grad[1]:
            gg = (gy * x).mul_(r).sum_to_size(ctx.g_shape).mul_(ctx.scale)
        # ∂x = r·w⊙∂y − x·(⟨w⊙∂y, x⟩ r³), the second term zero where ‖x‖ < eps (there the norm is the constant eps)
        gyw = gy * w
        c = torch.linalg.vecdot(gyw, x).unsqueeze(-1).mul_(r.pow(3)).mul_(big)
        return torch.addcmul(gyw.mul_(r), x, c, value=-1.0), gg, None, None


def rms_norm(x: Tensor, g: Tensor, scale: float, eps: float = 1e-12) -> Tensor:
    """normalize(x)·scale·g over the last axis (the seed's RMSNorm with scale = √d).

    g is (d,), or any shape ending in d that broadcasts against x (a gain per run of a stack)."""
    ok = g.ndim >= 1 and g.shape[-1] == x.shape[-1] and g.ndim <= x.ndim
    if ok:
        try:
            ok = torch.broadcast_shapes(g.shape, x.shape) == x.shape
        except RuntimeError:
            ok = False
    if not ok:
        raise ValueError(f"gain of shape {tuple(g.shape)} for x of shape {tuple(x.shape)}: expected ({x.shape[-1]},) "
                         "or a shape ending in it that broadcasts against x")
    return _RMSNorm.apply(x, g, scale, eps)



# ----------------------------------------------------------------------------- row gather
@torch.library.custom_op("lrdlib::gather_rows_backward", mutates_args=())
def _gather_rows_backward(grad: Tensor, index: Tensor, num_rows: int) -> Tensor:
    """∂table of ``F.embedding(index, table)``: ATen's deterministic scatter-add kernel."""
    return torch.ops.aten.embedding_dense_backward(grad, index, num_rows, -1, False)


@_gather_rows_backward.register_fake
def _(grad: Tensor, index: Tensor, num_rows: int) -> Tensor:
    return grad.new_empty(num_rows, grad.shape[-1])


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.num_rows = table.shape[0]
        return F.embedding(index, table)

    @staticmethod
    def backward(ctx, g: Tensor):
        (index,) = ctx.saved_tensors
        return _gather_rows_backward(g.contiguous(), index, ctx.num_rows), None


def gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """table[index]: (R, d) rows picked by an integer ``index`` of any shape → (*index.shape, d).

    Same values and gradient as ``F.embedding(index, table)`` (which is what runs eagerly);
    inside ``torch.compile`` the backward stays ATen's deterministic kernel (see above)."""
    if table.ndim != 2 or index.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"table {tuple(table.shape)} ({table.dtype}) and index ({index.dtype}): expected a 2-D "
                         "table and an integer index")
    if torch.compiler.is_compiling():
        return _GatherRows.apply(table, index)
    return F.embedding(index, table)
