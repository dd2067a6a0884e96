"""The report of scripts/bench_device.py: one Markdown table per measured case, and the ratios against the card."""

from __future__ import annotations

from typing import Any

from bench_device_measure import MIXES


def report(res: dict[str, Any]) -> None:
    card = res["card"]
    print(f"\n## {res['label']}: {res['pack']} ({res['pack_mb']:.0f} MB)")
    print(f"{res['cgroup']}; /dev/{res['disk']} read_ahead_kb={res['read_ahead_kb']}")
    if (res["read_ahead_kb"] or 0) > 128:
        print(
            f"note: read_ahead_kb {res['read_ahead_kb']} is larger than the kernel's usual 128 for an SD card: "
            f"readers that do not disable readahead (mmap faults, small preads) read more here than on a Pi"
        )
    print(
        "\n| measurement | records/s | MB/s delivered | device MB read / delivered | CPU s / wall s "
        "| x card | open s | peak RssAnon / cgroup anon MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = (
        ("card_first", "card limit (1st)"),
        ("default", "Pack.batches, default backend"),
        ("pure", "Pack.batches, pure backend"),
        ("default_step", "Pack.batches + model step (default)"),
        ("hybrid", "Pack.batches(hflip=0.5, shift=8) (default)"),
        *((key, "Pack.batches(" + ", ".join(f"{k}={v:g}" for k, v in mix.items()) + ")") for key, mix in MIXES.items()),
        ("card_last", "card limit (2nd)"),
    )
    for key, name in rows:
        if key not in res:
            continue
        m = res[key]
        amp = m["device_read_mb"] / m["delivered_mb"] if m["delivered_mb"] else float("nan")
        mem = f"{m['peak_rss_anon_mb']:.0f} / {m['peak_cgroup_anon_mb']:.0f}" if "open_s" in m else ""
        name = f"{name} ({m['backend']}, {m['reader']} reader)" if m.get("reader") else name
        name = f"{name} ({m['backend']})" if "backend" in m and not m.get("reader") else name
        print(
            f"| {name} | {m['records_per_s']:,.1f} | {m['delivered_mb'] / m['seconds']:.1f} | {amp:.2f} "
            f"| {m['cpu_s']:.1f} / {m['seconds']:.1f} | {m['records_per_s'] / card:.2f} "
            f"| {m.get('open_s', float('nan')):.2f} | {mem} |"
        )
    if "mix_all" in res:
        report_mix(res)
        return
    print(
        f"\nratios against the card limit (mean of 1st and 2nd, {card:,.1f} records/s): "
        f"default/card = {res['default']['records_per_s'] / card:.2f}, "
        f"pure/card = {res['pure']['records_per_s'] / card:.2f} (goal >= 0.8)"
    )
    st = res["default_step"]
    print(
        f"with a model step of {st['step_s'] * 1e3:.0f} ms per batch (one batch's read time at the card's limit): "
        f"{st['records_per_s'] / card:.2f} x card; reading without overlap would give 0.50"
    )
    if "hybrid" in res:
        h = res["hybrid"]
        print(
            f"online flip 0.5 + shift 8 during the read: {h['records_per_s'] / res['default']['records_per_s']:.2f}"
            f" x plain batches (goal >= 0.85), {h['cpu_s'] / max(h['records'], 1) * 1e6:.0f} vs "
            f"{res['default']['cpu_s'] / max(res['default']['records'], 1) * 1e6:.0f} CPU us per record"
        )


def report_mix(res: dict[str, Any]) -> None:
    """--mix: each op against the plain batches of the same run, with CPU per record."""
    base = res["default"]
    print(f"\nplain batches against the card limit: {base['records_per_s'] / res['card']:.2f}")
    cpu = base["cpu_s"] / max(base["records"], 1) * 1e6
    print(f"\nplain batches: {base['records_per_s']:,.1f} records/s, {cpu:.0f} CPU us per record (the baseline)")
    for key, mix in MIXES.items():
        m = res[key]
        ops = ", ".join(f"{k}={v:g}" for k, v in mix.items())
        print(
            f"{ops}: {m['records_per_s'] / base['records_per_s']:.2f} x plain batches (goal >= 0.9), "
            f"{m['cpu_s'] / max(m['records'], 1) * 1e6:.0f} CPU us per record"
        )
