"""The dual-margin contrastive loss against a plain loop written from the paper's definition (section 3.4.2)."""

from __future__ import annotations

import math

import pytest
import torch

from eee_ray.losses import LossConfig, dual_margin_contrastive, pretraining_losses, weighted_total


def loop_reference(f_a, f_b, ids, tau=0.07, m=0.5, m_same=0.2):
    """Element by element: S_ij = cos/tau; keep j for anchor row i when S_ii - margin < S_ij < S_ii."""
    n = f_a.shape[0]
    s = [[torch.nn.functional.cosine_similarity(f_a[i], f_b[j], dim=0).item() / tau for j in range(n)]
         for i in range(n)]
    keep = [[False] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i == j:
                keep[i][j] = True
            else:
                margin = m_same if ids[i] == ids[j] else m
                keep[i][j] = s[i][i] - margin / tau < s[i][j] < s[i][i]

    def ce(rows_logits_keep):
        total = 0.0
        for i, (logits, kept) in enumerate(rows_logits_keep):
            vals = [v for v, k in zip(logits, kept) if k]
            total += -(logits[i] - math.log(sum(math.exp(v) for v in vals)))
        return total / n

    rows = [(s[i], keep[i]) for i in range(n)]
    cols = [([s[j][i] for j in range(n)], [keep[j][i] for j in range(n)]) for i in range(n)]
    return 0.5 * (ce(rows) + ce(cols))


@pytest.mark.parametrize("case", ["mixed", "all_same", "all_different"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop(case, seed):
    g = torch.Generator().manual_seed(seed)
    n, d = 12, 6
    f_a = torch.randn(n, d, generator=g, dtype=torch.float64)
    # f_b close to f_a so that many negatives land inside the margins
    f_b = f_a + 0.8 * torch.randn(n, d, generator=g, dtype=torch.float64)
    ids = {"mixed": torch.randint(0, 3, (n,), generator=g), "all_same": torch.zeros(n, dtype=torch.long),
           "all_different": torch.arange(n)}[case]
    got = dual_margin_contrastive(f_a, f_b, ids).item()
    assert got == pytest.approx(loop_reference(f_a, f_b, ids.tolist()), rel=1e-9, abs=1e-9)


def test_ties_are_not_negatives():
    """Duplicated rows give S_ij == S_ii exactly: strict inequality drops them, identical to the loop."""
    base = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    f_a = torch.cat([base, base[:1]])  # row 3 duplicates row 0
    f_b = torch.cat([base, base[:1]])
    ids = torch.tensor([0, 1, 2, 3])
    got = dual_margin_contrastive(f_a, f_b, ids, tau=0.5, m=1.0, m_same=0.5).item()
    assert got == pytest.approx(loop_reference(f_a, f_b, ids.tolist(), tau=0.5, m=1.0, m_same=0.5), abs=1e-12)


def test_margins_select_and_scale():
    """Perfectly separated features have no negative inside the band: the loss is exactly 0; un-normalised inputs
    give the same value as normalised ones."""
    f = torch.eye(4)
    assert dual_margin_contrastive(f, f, torch.arange(4)).item() == pytest.approx(0.0, abs=1e-7)
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert dual_margin_contrastive(7 * a, 0.1 * b, ids).item() == pytest.approx(
        dual_margin_contrastive(a, b, ids).item(), rel=1e-5)


def test_gradients_flow_and_empty_is_zero():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(16, 8, generator=g, requires_grad=True)
    b = torch.randn(16, 8, generator=g, requires_grad=True)
    loss = dual_margin_contrastive(a, b, torch.arange(16) % 4, m=2.0, m_same=2.0)
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    empty = dual_margin_contrastive(torch.zeros(0, 8), torch.zeros(0, 8), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0.0


def test_total_uses_aligned_valid_tokens_only():
    """Misaligned samples and padded tokens must not move the contrastive terms; they only enter the BCE."""
    g = torch.Generator().manual_seed(5)
    b, t, d = 4, 3, 8
    out = {"ecg_cls": torch.randn(b, d, generator=g), "echo_cls": torch.randn(b, d, generator=g),
           "ecg_tok": torch.randn(b, t, d, generator=g), "echo_tok": torch.randn(b, t, d, generator=g),
           "align_logit": torch.randn(b, generator=g)}
    pad = torch.tensor([[False, False, True]] * b)
    shift = torch.tensor([0, 0, 1, 0])
    sid, pid = torch.tensor([10, 11, 12, 13]), torch.tensor([1, 1, 2, 2])
    cfg = LossConfig()
    terms = pretraining_losses(out, pad, shift, sid, pid, cfg)
    keep = torch.tensor([0, 1, 3])
    assert terms["sid"].item() == pytest.approx(
        dual_margin_contrastive(out["ecg_cls"][keep], out["echo_cls"][keep], sid[keep]).item())
    tok_a = out["ecg_tok"][keep][:, :2].reshape(-1, d)
    tok_b = out["echo_tok"][keep][:, :2].reshape(-1, d)
    assert terms["token"].item() == pytest.approx(
        dual_margin_contrastive(tok_a, tok_b, sid[keep].repeat_interleave(2)).item())
    total = weighted_total(terms, cfg)
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()))
