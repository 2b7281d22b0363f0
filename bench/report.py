"""Markdown tables from the side-by-side results in bench/results/ (written
by `fastact bench --json`), for the README.

    python -P bench/report.py
"""
import json
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def load(name):
    with open(os.path.join(HERE, name)) as f:
        return json.load(f)


def by_key(data):
    return {(r["op"], tuple(r["shape"]), r["mode"]): r for r in data["results"]}


def ratio(r, compile_=False):
    if r is None:
        return ""
    if compile_:
        return f"{r['ratio_compile']:.2f}" if r.get("ratio_compile") else ""
    return f"{r['ratio']:.2f} ({r['torch_ms']:.4g} → {r['fastact_ms']:.4g} ms)"


def table(default_file, thp_file, ops, with_compile=False):
    d, t = load(default_file), load(thp_file)
    D, T = by_key(d), by_key(t)
    head = "| op | shape | fwd+bwd, default | fwd+bwd, THP for both | fwd, default | GB/s fwd+bwd (default) |"
    sep = "|---|---|---|---|---|---|"
    if with_compile:
        head += " vs torch.compile, default | vs torch.compile, THP |"
        sep += "---|---|"
    lines = [head, sep]
    shapes = sorted({k[1] for k in D if k[0] in ops}, key=lambda s: s[0] * s[1])
    for op in ops:
        for shape in shapes:
            fb = D.get((op, shape, "fwd+bwd"))
            if fb is None:
                continue
            tb, f = T.get((op, shape, "fwd+bwd")), D.get((op, shape, "fwd"))
            gb = f"{fb['fastact_gbps']:.0f} (torch {fb['torch_gbps']:.0f})" if fb["fastact_gbps"] else ""
            line = (f"| {op} | {shape[0]}×{shape[1]} | {ratio(fb)} | {ratio(tb)} | "
                    f"{f['ratio']:.2f} | {gb} |")
            if with_compile:
                line += f" {ratio(fb, True)} | {ratio(tb, True)} |"
            lines.append(line)
    lines.append("")
    lines.append(f"Copy bandwidth measured in the same runs (64 MiB `copy_`, bytes read + written): "
                 f"{d['copy_gbps']:.0f} GB/s (default run), {t['copy_gbps']:.0f} GB/s (THP run).")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table("cpu-ops-default.json", "cpu-ops-thp.json",
                ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "selu", "softmax", "log_softmax",
                 "bce_with_logits"]))
    print()
    print(table("cpu-ce-default.json", "cpu-ce-thp.json", ["cross_entropy", "cross_entropy_probs"],
                with_compile=True))
