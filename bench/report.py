"""The table printed at the end of a run, and the targets checked against the figures."""

from __future__ import annotations

from typing import Any

PHASES = ("up", "preview", "up-noop", "refresh", "destroy")
C_UNAVAILABLE = "unavailable (plugin not buildable here)"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def scenario_rows(sc: dict[str, Any]) -> list[str]:
    rows = []
    for ph in PHASES:
        p = sc["pulumi"].get(ph)
        if p is None:
            continue
        rss = p.get("provider_peak_rss_mb")
        cpu = p.get("provider_cpu_seconds")
        rows.append(
            f"| {sc['name']} | pulumi {ph} | {p['seconds']:.1f} | {p['ssh_connections_opened']} "
            f"| {p['ssh_commands_run']} | {'-' if rss is None else rss} | {'-' if cpu is None else cpu} "
            f"| {p.get('summary', '')} |"
        )
    for key, label in (("floor", "(a) floor"), ("per_command_ssh", "(b) ssh per command")):
        b = sc["baselines"].get(key, {})
        for ph in ("create", "teardown"):
            r = b.get(ph)
            if r is None:
                continue
            if "seconds" not in r:
                rows.append(f"| {sc['name']} | {label} {ph} | {r.get('status', '-')} | | | | | |")
                continue
            rows.append(
                f"| {sc['name']} | {label} {ph} | {r['seconds']:.1f} | {r['ssh_connections_opened']} "
                f"| {r['ssh_commands_run']} | | | {r.get('note', '')} |"
            )
    rows.append(f"| {sc['name']} | (c) pulumi-command | {C_UNAVAILABLE} | | | | | |")
    return rows


def table(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | phase | seconds | SSH conns | remote cmds | provider peak MB | provider CPU s | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for sc in results["scenarios"]:
        lines += scenario_rows(sc)
    lines += ["", "| scenario | links | up s | up/link s | up/floor | up/(b) | up/(c) | destroy/(b) down |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for sc in results["scenarios"]:
        r = sc["ratios"]
        lines.append(
            f"| {sc['name']} | {sc['links']} | {_s(r['up_seconds'])} | {r['up_per_link']:.2f} "
            f"| {r['up_over_floor']} | {r['up_over_b']} | {r['up_over_c']} | {r['destroy_over_b']} |"
        )
    return "\n".join(lines)


def ratios(sc: dict[str, Any]) -> dict[str, Any]:
    up = sc["pulumi"]["up"]["seconds"]
    destroy = sc["pulumi"].get("destroy", {}).get("seconds")
    fl = sc["baselines"].get("floor", {}).get("create", {}).get("seconds")
    b = sc["baselines"].get("per_command_ssh", {}).get("create", {}).get("seconds")
    bt = sc["baselines"].get("per_command_ssh", {}).get("teardown", {}).get("seconds")
    return {
        "up_seconds": up,
        "up_per_link": up / sc["links"],
        "up_over_floor": _ratio(up, fl),
        "up_over_b": _ratio(up, b),
        "b_over_up": _ratio(b, up),
        "up_over_c": "n/a",
        "destroy_over_b": _ratio(destroy, bt),
    }


def targets(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """(target, met (None: not measured), evidence)."""
    out: list[tuple[str, bool | None, str]] = []
    scs = results["scenarios"]
    prev = [
        (s["name"], s["pulumi"]["preview"]["ssh_connections_opened"]) for s in scs if "preview" in s["pulumi"]
    ]
    out.append(
        (
            "no-op preview opens 0 SSH connections",
            all(c == 0 for _, c in prev) if prev else None,
            ", ".join(f"{n}: {c}" for n, c in prev),
        )
    )
    ref = [
        (s["name"], s["pulumi"]["refresh"]["ssh_connections_opened"], s["hosts"])
        for s in scs
        if "refresh" in s["pulumi"]
    ]
    out.append(
        (
            "refresh opens at most one connection per host",
            all(c <= h for _, c, h in ref) if ref else None,
            ", ".join(f"{n}: {c} for {h} hosts" for n, c, h in ref),
        )
    )
    big = [s for s in scs if s["links"] == 20 and s["ratios"]["b_over_up"] != "n/a"]
    out.append(
        (
            "20 links: pulumi up at least 10x faster than (b)",
            all(float(s["ratios"]["b_over_up"]) >= 10 for s in big) if big else None,
            ", ".join(f"{s['name']}: (b)/up = {s['ratios']['b_over_up']}" for s in big),
        )
    )
    single = sorted((s for s in scs if s.get("kind") == "single"), key=lambda s: s["links"])
    if len(single) >= 2:
        first, last = single[0], single[-1]
        a, z = first["ratios"]["up_per_link"], last["ratios"]["up_per_link"]
        out.append(
            (
                f"cost per link does not grow from {first['links']} to {last['links']} links",
                z <= a * 1.05,
                f"{a:.2f} s/link -> {z:.2f} s/link",
            )
        )
    return out
