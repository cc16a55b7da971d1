"""The seed's question answered: how many concurrent users its fleet serves at p95 <= 5 s, and
what moves that number most (hit rate, answer length, parallel slots).

Reads ``data/plans/seed.toml`` (4 small + 2 large servers, 60% hits, 30% small, 10% large;
server speeds are public figures, not measurements; think time and token counts are our
assumptions, marked in the file). Prints the tables, writes ``bench/results/plan_seed.json`` and,
with ``--plot``, the README's PNG.

    PYTHONPATH=. .venv/bin/python bench/plan_seed.py --plot docs/capacity_seed.png     # ~1 minute
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from semroute.planning import max_users, plan, profile_from_mapping
from semroute.planning.model import sensitivity
from semroute.planning.variants import with_answer_scale, with_hit_rate, with_slots

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 5.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", type=Path, default=ROOT / "data" / "plans" / "seed.toml")
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "plan_seed.json")
    args = ap.parse_args()
    profile = profile_from_mapping(tomllib.loads(args.profile.read_text(encoding="utf-8")))
    overall = max_users(profile, target_p95_s=TARGET_S, overall=True)
    per_tier = max_users(profile, target_p95_s=TARGET_S)
    small_only = plan(profile, users=1).tiers
    print(f"fleet {dict(profile.fleet)}: most users at overall p95 <= {TARGET_S:g} s: {overall}; "
          f"with every tier's p95 <= {TARGET_S:g} s: {per_tier}")
    print("unloaded p95 per tier (1 user): " + ", ".join(f"{t} {r.p95_s:.2f} s" for t, r in small_only.items()))
    at = plan(profile, users=overall)
    print(f"at {overall} users: " + json.dumps({k: at.as_dict()[k] for k in ("p95_s", "utilisation", "cost_per_user")}))
    variants = {
        "hit rate 0.4": with_hit_rate(profile, 0.4), "hit rate 0.5": with_hit_rate(profile, 0.5),
        "hit rate 0.7": with_hit_rate(profile, 0.7), "hit rate 0.8": with_hit_rate(profile, 0.8),
        "answers x0.5": with_answer_scale(profile, 0.5), "answers x0.75": with_answer_scale(profile, 0.75),
        "answers x1.5": with_answer_scale(profile, 1.5),
        "2 slots": with_slots(profile, 2), "8 slots": with_slots(profile, 8),
    }
    rows = sensitivity(profile, variants, target_p95_s=TARGET_S, overall=True)
    print(f"\n| variant | most users at overall p95 <= {TARGET_S:g} s | change |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['max_users']} | {row['change']:+.0%} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"profile": str(args.profile.name), "target_p95_s": TARGET_S,
                                    "max_users_overall": overall, "max_users_every_tier": per_tier,
                                    "sensitivity": rows}, indent=1))
    if args.plot is not None:
        from semroute.planning.plot import plot_users

        plot_users(profile, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
