"""The detection study's metric (IoU, mAP@0.5) and its tiny CenterNet-style detector (PyTorch, imported lazily).

``study_detect.py`` uses both; the metric is tested in ``tests/test_study.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, List, Tuple

import numpy as np

if TYPE_CHECKING:
    from study_detect import DetCondition

OUT, STRIDE = 64, 4  # the default frame px; the detector's output stride


# --- metric -------------------------------------------------------------------------------


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes ``(n, 4)`` and ``(m, 4)`` as ``x0, y0, x1, y1``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def average_precision(dets: List[np.ndarray], gts: List[np.ndarray], thr: float = 0.5) -> float:
    """AP of one class at IoU ``thr``: dets[i] ``(n, 5)`` as ``score, x0, y0, x1, y1``; gts[i] ``(m, 4)``.

    Detections of all images ranked by score; each matches the unmatched
    ground truth of its image with the highest IoU >= thr, else it is a false
    positive; AP is the area under the precision envelope (all points, as
    VOC 2010+ and COCO's per-threshold AP before its 101-point sampling).
    """
    n_gt = sum(len(g) for g in gts)
    if n_gt == 0:
        return float("nan")
    flat = [(float(d[0]), i, d[1:5]) for i, ds in enumerate(dets) for d in np.asarray(ds).reshape(-1, 5)]
    flat.sort(key=lambda t: -t[0])
    used = [np.zeros(len(g), bool) for g in gts]
    tp = np.zeros(len(flat))
    for k, (_, i, box) in enumerate(flat):
        if len(gts[i]):
            ov = iou(box, gts[i])[0]
            ov[used[i]] = -1
            j = int(ov.argmax())
            if ov[j] >= thr:
                used[i][j], tp[k] = True, 1
    ctp = np.cumsum(tp)
    recall = np.concatenate([[0.0], ctp / n_gt])
    precision = np.concatenate([[1.0], ctp / np.arange(1, len(flat) + 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


# --- the detector (PyTorch) -----------------------------------------------------------------


def heat_targets(boxes: List[np.ndarray], h: int, w: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CenterNet targets on the stride-4 grid: heatmap (B, 1, h, w), size+offset (B, 4, h, w), mask (B, 1, h, w)."""
    b = len(boxes)
    heat, reg, mask = np.zeros((b, 1, h, w), np.float32), np.zeros((b, 4, h, w), np.float32), np.zeros((b, 1, h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    for i, bx in enumerate(boxes):
        for _, x0, y0, x1, y1 in np.asarray(bx).reshape(-1, 5):
            cx, cy, bw, bh = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE, (x1 - x0) / STRIDE, (y1 - y0) / STRIDE
            if bw <= 0 or bh <= 0:
                continue
            ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
            sigma = max(0.5, 0.15 * np.sqrt(bw * bh))
            g = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma**2))
            heat[i, 0] = np.maximum(heat[i, 0], g)
            reg[i, :, iy, ix] = (bw, bh, cx - ix, cy - iy)
            mask[i, 0, iy, ix] = 1
    return heat, reg, mask.astype(np.float32)


def train_detector(
    cond: DetCondition, seed: int, epochs: int, size: int = OUT
) -> Callable[[np.ndarray], List[np.ndarray]]:
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def block(i, o, s):
        return [nn.Conv2d(i, o, 3, s, 1), nn.BatchNorm2d(o), nn.ReLU()]

    # Stride 4 after two layers: ~6 MFLOP per 64x64 image, so a training fits in a minute or two of CPU.
    body = nn.Sequential(*block(3, 16, 2), *block(16, 32, 2), *block(32, 32, 1), *block(32, 32, 1))
    head = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 5, 1))
    net = nn.Sequential(body, head)
    head[-1].bias.data[0] = -2.19  # CenterNet's prior: heat ~0.1 at start
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    cond.epochs = epochs

    def tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255.0)

    for e in range(epochs):
        net.train()
        for x, boxes in cond.batches(seed, e):
            heat, reg, mask = (torch.from_numpy(a) for a in heat_targets(boxes, size // STRIDE, size // STRIDE))
            out = net(tensor(x))
            p = torch.sigmoid(out[:, :1]).clamp(1e-4, 1 - 1e-4)
            pos = heat.eq(1).float()
            focal = -(pos * (1 - p) ** 2 * torch.log(p) + (1 - pos) * (1 - heat) ** 4 * p**2 * torch.log(1 - p)).sum()
            npos = pos.sum().clamp(min=1)
            l1 = (torch.abs(out[:, 1:] - reg) * mask).sum() / npos
            loss = focal / npos + 0.1 * l1
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()

    def detect(x: np.ndarray, top: int = 20) -> List[np.ndarray]:
        with torch.no_grad():
            out = net(tensor(x))
            heat = torch.sigmoid(out[:, 0:1])
            peaks = heat * (heat == nn.functional.max_pool2d(heat, 3, 1, 1)).float()
        res = []
        for i in range(len(x)):
            s, idx = peaks[i, 0].flatten().topk(top)
            iy, ix = (idx // peaks.shape[3]).numpy(), (idx % peaks.shape[3]).numpy()
            r = out[i, 1:].numpy()[:, iy, ix]
            cx, cy = (ix + r[2]) * STRIDE, (iy + r[3]) * STRIDE
            bw, bh = r[0] * STRIDE, r[1] * STRIDE
            res.append(np.stack([s.numpy(), cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1))
        return res

    return detect
