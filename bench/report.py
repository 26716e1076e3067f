"""The table printed at the end of a run, and the targets checked against the figures."""

from __future__ import annotations

from typing import Any

PHASES = ("up", "preview", "up-noop", "refresh", "destroy")
C_PHASES = ("up", "preview", "refresh", "destroy")
C_LABEL = "(c) pulumi-command"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def _v(v: Any) -> str:
    return "-" if v is None else str(v)


def _sshd(p: dict[str, Any]) -> str:
    """Connections the hosts' sshd accepted, and the peak of concurrent sessions."""
    conns = p.get("host_ssh_connections")
    return "-" if conns is None else f"{conns} ({_v(p.get('host_peak_sessions'))})"


def phase_row(scenario: str, label: str, p: dict[str, Any], client: bool = True) -> str:
    """A pulumi phase; `client`: the program's own SSH counters exist (not for (c))."""
    conns, cmds = (p["ssh_connections_opened"], p["ssh_commands_run"]) if client else ("-", "-")
    rss, cpu = _v(p.get("provider_peak_rss_mb")), _v(p.get("provider_cpu_seconds"))
    return (
        f"| {scenario} | {label} | {p['seconds']:.1f} | {conns} | {cmds} | {_sshd(p)} | {rss} | {cpu} "
        f"| {p.get('summary', '')} |"
    )


def c_rows(sc: dict[str, Any]) -> list[str]:
    c = sc["baselines"].get("pulumi_command", {})
    rows = [phase_row(sc["name"], f"{C_LABEL} {ph}", c[ph], client=False) for ph in C_PHASES if ph in c]
    if "status" in c:
        rows.append(f"| {sc['name']} | {C_LABEL} | {c['status']} | | | | | | |")
    return rows


def scenario_rows(sc: dict[str, Any]) -> list[str]:
    rows = [phase_row(sc["name"], f"pulumi {ph}", sc["pulumi"][ph]) for ph in PHASES if ph in sc["pulumi"]]
    for key, label in (("floor", "(a) floor"), ("per_command_ssh", "(b) ssh per command")):
        b = sc["baselines"].get(key, {})
        for ph in ("create", "teardown"):
            r = b.get(ph)
            if r is None:
                continue
            if "seconds" not in r:
                rows.append(f"| {sc['name']} | {label} {ph} | {r.get('status', '-')} | | | | | | |")
                continue
            rows.append(
                f"| {sc['name']} | {label} {ph} | {r['seconds']:.1f} | {r['ssh_connections_opened']} "
                f"| {r['ssh_commands_run']} | | | | {r.get('note', '')} |"
            )
    return rows + c_rows(sc)


def table(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | phase | seconds | SSH conns | remote cmds | sshd conns (peak) | provider peak MB "
        "| provider CPU s | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for sc in results["scenarios"]:
        lines += scenario_rows(sc)
    lines += [
        "",
        "| scenario | links | up s | up/link s | up/floor | destroy/floor down | up/(b) | (c)/up "
        "| (c) destroy/destroy | destroy/(b) down |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for sc in results["scenarios"]:
        r = sc["ratios"]
        lines.append(
            f"| {sc['name']} | {sc['links']} | {_s(r['up_seconds'])} | {r['up_per_link']:.2f} "
            f"| {r['up_over_floor']} | {r['destroy_over_floor']} | {r['up_over_b']} | {r['c_over_up']} "
            f"| {r['c_destroy_over_destroy']} "
            f"| {r['destroy_over_b']} |"
        )
    return "\n".join(lines)


def ratios(sc: dict[str, Any]) -> dict[str, Any]:
    up = sc["pulumi"]["up"]["seconds"]
    destroy = sc["pulumi"].get("destroy", {}).get("seconds")
    fl = sc["baselines"].get("floor", {}).get("create", {}).get("seconds")
    b = sc["baselines"].get("per_command_ssh", {}).get("create", {}).get("seconds")
    bt = sc["baselines"].get("per_command_ssh", {}).get("teardown", {}).get("seconds")
    c = sc["baselines"].get("pulumi_command", {})
    c_up, c_destroy = c.get("up", {}).get("seconds"), c.get("destroy", {}).get("seconds")
    return {
        "up_seconds": up,
        "up_per_link": up / sc["links"],
        "up_over_floor": _ratio(up, fl),
        "destroy_over_floor": _ratio(
            destroy, sc["baselines"].get("floor", {}).get("teardown", {}).get("seconds")
        ),
        "up_over_b": _ratio(up, b),
        "b_over_up": _ratio(b, up),
        "c_over_up": _ratio(c_up, up),
        "c_destroy_over_destroy": _ratio(c_destroy, destroy),
        "destroy_over_b": _ratio(destroy, bt),
    }


def _twenty_links_at_least(
    scs: list[dict[str, Any]], key: str, what: str, floor: float, most: bool = False
) -> tuple[str, bool | None, str]:
    """ "20 links: WHAT >= FLOOR" (`most`: <=) over the 20-link scenarios where it was measured."""
    big = [s for s in scs if s["links"] == 20 and s["ratios"].get(key, "n/a") != "n/a"]
    met = [float(s["ratios"][key]) <= floor if most else float(s["ratios"][key]) >= floor for s in big]
    return (
        f"20 links: {what} {'<=' if most else '>='} {floor:g}",
        all(met) if big else None,
        ", ".join(f"{s['name']}: {what} = {s['ratios'][key]}" for s in big),
    )


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
    for key, what in (("up_over_floor", "up/floor"), ("destroy_over_floor", "destroy/floor teardown")):
        out.append(_twenty_links_at_least(scs, key, what, 1.5, most=True))
    for key, what in (("c_over_up", "(c)/up"), ("c_destroy_over_destroy", "(c) destroy / destroy")):
        out.append(_twenty_links_at_least(scs, key, what, 5))
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
