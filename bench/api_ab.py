"""API before and after: the web process of another checkout and of this one, on one seeded
database, taking turns.

On a shared machine `bench/api.py` gives figures that move by a third from one run to the
next; two runs of it, one per checkout, compare the machine's moods as much as the code.
Here both servers run at once on the same data, and each scenario is played in rounds,
alternating which server goes first, so both meet the same conditions; the medians of the
rounds are printed side by side.

    git worktree add /tmp/before <commit>
    python bench/api_ab.py --before /tmp/before

The other checkout runs with this checkout's virtualenv, so its lock must be compatible,
and both must share a database schema (no migration between them). Scenarios are those of
`bench/api.py`.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import api  # noqa: E402  (after the path is set)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--requests", type=int, default=600, help="per scenario and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--checkpoints", type=int, default=api.CHECKPOINTS)
    args = parser.parse_args()

    api.setup_django()
    pending_needed = args.requests * args.rounds * 2
    token, pending = api.seed(args.checkpoints, max(api.PENDING, pending_needed))
    servers = {
        side: (api.start_server(port, 2, checkout), port)
        for side, checkout, port in (
            ("before", args.before.resolve(), api.free_port()),
            ("after", ROOT, api.free_port()),
        )
    }
    undecided = iter(pending)
    create = json.dumps({"job_type": "simple-task", "input": {"n": 1}}).encode()
    scenarios: list[tuple[str, api.Request | None, int]] = [
        ("job create", lambda i: ("POST", "/api/v1/jobs/", create), 201),
        ("checkpoint list", lambda i: ("GET", "/api/v1/checkpoints/?status=pending", None), 200),
        ("approve", None, 200),  # each round its own checkpoints
        ("healthz", lambda i: ("GET", "/healthz", None), 200),
    ]
    results: dict[tuple[str, str], list[api.Result]] = {}
    try:
        for name, make, expect in scenarios:
            for round_ in range(args.rounds):
                for side in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                    if make is None:
                        ids = [next(undecided) for _ in range(args.requests)]

                        def approve(i: int, ids: list[int] = ids) -> tuple[str, str, bytes]:
                            return "POST", f"/api/v1/checkpoints/{ids[i]}/approve/", b"{}"

                        request: api.Request = approve
                    else:
                        request = make
                    port = servers[side][1]
                    result = api.load(
                        name, port, token, request, args.requests, args.clients, expect
                    )
                    results.setdefault((name, side), []).append(result)
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=20)
        api.purge_queue()
    print(
        f"{args.checkpoints} checkpoints; {args.rounds} rounds of {args.requests} requests per "
        f"scenario and side; medians of the rounds\n"
    )
    print("| Scenario | Side | req/s each round | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for (name, side), rounds in results.items():
        rates = [r.requests / r.seconds for r in rounds]
        cuts = [statistics.quantiles(r.latencies_ms, n=100, method="inclusive") for r in rounds]
        print(
            f"| {name} | {side} | {', '.join(f'{x:.0f}' for x in rates)} "
            f"| {statistics.median(rates):.0f} | {statistics.median(c[49] for c in cuts):.1f} "
            f"| {statistics.median(c[98] for c in cuts):.1f} | {sum(r.errors for r in rounds)} |"
        )


if __name__ == "__main__":
    main()
