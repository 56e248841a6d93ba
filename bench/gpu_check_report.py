"""bench/gpu_check.py's report for a person: the JSON report as Markdown, every figure in a table."""

from __future__ import annotations


def markdown(report: dict) -> str:
    lines = [f"# {report['check']}", "", *header(report), "", *overview(report["sections"])]
    targets = [t for s in report["sections"] for t in s.get("targets", [])]
    if targets:
        lines += [
            "",
            "## Targets (issue 14)",
            "",
            *table(("target", "wanted", "measured", "met"), map(target_row, targets)),
        ]
    for i, s in enumerate(report["sections"], 1):
        lines += ["", f"## {i}. {s['title']}: {s['status']}", ""]
        lines += DETAILS.get(s["name"], lambda s: [])(s)
        lines += checks(s) + tail(s)
    return "\n".join(lines) + "\n"


def header(report: dict) -> list[str]:
    m = report["machine"]
    device = m.get("device_name") or m.get("device", "?")
    if m.get("gpu_memory_gib"):
        device += f" ({m['gpu_memory_gib']} GiB, compute capability {m.get('capability')})"
    software = f"torch {m.get('torch', '?')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}, Python {m.get('python')}"
    seconds = report.get("seconds", 0)
    verdict = "**passed**" if report.get("passed") else "**failed**"
    return [
        f"- mode: {report['mode']}; {report['date']}",
        f"- device: {device}; {m.get('cpu_count', '?')} CPUs; {software}",
        *([f"- nvidia-smi: {m['nvidia_smi']}"] if m.get("nvidia_smi") else []),
        f"- {verdict}: {seconds} s in all (budget {report['budget_s']} s on a GPU)",
        *([DRY_RUN_NOTE] if report["mode"] != "cuda" else []),
    ]


DRY_RUN_NOTE = "- a dry run: tiny sizes on the CPU; its figures show that the check works, they measure nothing"


def overview(sections: list[dict]) -> list[str]:
    rows = [
        (f"{i}. {s['title']}", s["status"], f"{s['seconds']} s", f"{s['budget_s']} s", one_line(s["reason"]))
        for i, s in enumerate(sections, 1)
    ]
    return table(("section", "result", "took", "budget", "why"), rows)


def table(head: tuple[str, ...], rows) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:300]


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def target_row(t: dict) -> tuple:
    return (t["what"], t["wanted"], number(t["measured"], 2), "yes" if t["met"] else "**no**")


# -- each section's own figures ------------------------------------------------------------------


def tests_details(s: dict) -> list[str]:
    tests = s["figures"].get("tests", [])
    rows = [(t["test"], t["outcome"], f"{t['seconds']:.1f} s") for t in tests]
    lines = table(("test", "outcome", "took"), rows) if rows else ["No test reported an outcome."]
    for t in tests:
        if t["outcome"] == "failed":
            lines += ["", f"`{t['test']}`:", "", "```", t["message"].strip(), "```"]
    return lines


def throughput_details(s: dict) -> list[str]:
    rows = s["figures"].get("rows", [])
    on_cuda = s["figures"].get("device") == "cuda"
    head = (
        "model",
        "size",
        "batch",
        "rounds",
        "plain loop img/s",
        "ftui img/s",
        "bare img/s",
        "ftui / bare",
        "ftui / plain",
        "GFLOP/img",
        "ftui TFLOP/s",
        "ftui share of peak",
        "bare share of peak",
    )
    body = []
    for r in rows:
        if "error" in r:
            body.append((r["model"], r["size"], r["batch"], "failed: " + one_line(r["error"]), *[""] * 9))
            continue
        share = [peak_share(r[f"{loop}_mfu"], on_cuda) for loop in ("ftui", "bare")]
        body.append(
            (
                r["model"],
                r["size"],
                r["batch"],
                r["rounds"],
                number(r["seed"]),
                number(r["ftui"]),
                number(r["bare"]),
                number(r["ftui_vs_bare"], 2),
                number(r["ftui_vs_seed"], 2),
                number(r["gflops_per_image"], 2),
                number(r["ftui_tflops"], 2),
                *share,
            )
        )
    return table(head, body) + [
        "",
        "Medians of the rounds; the plain loop is the report's float32 loop (torchvision transforms, a "
        "DataLoader); GFLOP/img: one training step per image, 3 x the forward pass (a multiply-add is 2 FLOPs).",
    ]


def peak_share(mfu: float | None, on_cuda: bool) -> str:
    """A share of the GPU's peak bf16 FLOP/s; "unknown" for a GPU not in throughput.py's table of peaks."""
    if mfu is not None:
        return f"{mfu:.1%}"
    return "unknown" if on_cuda else "-"


def workbench_details(s: dict) -> list[str]:
    f = s["figures"]
    rows = [
        (path, f[path]["device"], ", ".join(number(x, 0) for x in f[path]["epochs"]), number(f[path]["images_per_sec"]))
        for path in ("cli", "workbench")
        if path in f
    ]
    lines = [recipe_line(f["recipe"]), ""] if "recipe" in f else []
    lines += table(("trained from", "device", "images/s, epoch by epoch", "median after the first epoch"), rows)
    if "workbench_over_cli" in f:
        lines += ["", f"The workbench trained at {f['workbench_over_cli']:.1%} of the CLI's images/s."]
    return lines


def recipe_line(r: dict) -> str:
    return (
        f"The recipe: {r['model']} at {r['input_size']}, batch {r['batch_size']}, {r['epochs']} epochs of "
        f"{r['max_steps_per_epoch']} steps, on {r['device']}."
    )


def finetune_details(s: dict) -> list[str]:
    f = s["figures"]
    rows = []
    for key, what in (
        ("cpu_run", "the short CPU run"),
        ("finetune", f"the fine-tune from {f.get('finetune', {}).get('weights')}"),
    ):
        for e in f.get(key, {}).get("epochs", []):
            rows.append(
                (
                    what,
                    e["epoch"] + 1,
                    number(e["train_loss"], 4),
                    number(e["test_loss"], 4),
                    number(e["test_acc"], 2),
                    number(e["images_per_sec"]),
                )
            )
    lines = table(("run", "epoch", "train loss", "test loss", "test acc %", "images/s"), rows)
    again = f.get("best_evaluated_again")
    if again:
        lines += [
            "",
            f"Its best checkpoint evaluated again: {again['accuracy']:.2f}% on {again['images']} images "
            f"(recorded by the run: {again['recorded']}%).",
        ]
    return lines


DETAILS = {
    "tests": tests_details,
    "throughput": throughput_details,
    "workbench": workbench_details,
    "finetune": finetune_details,
}


def checks(s: dict) -> list[str]:
    rows = [(c["what"], "yes" if c["passed"] else "**no**", one_line(c["detail"])) for c in s.get("checks", [])]
    return ["", *table(("check", "passed", "detail"), rows)] if rows else []


def tail(s: dict) -> list[str]:
    if not s.get("output_tail"):
        return []
    return ["", "The end of its output:", "", "```", s["output_tail"].strip()[-3000:], "```"]
