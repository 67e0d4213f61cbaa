"""Named evaluation presets: the settings a published protocol fixes.

A number set beside a paper's is only comparable when it was measured as the paper
measured it; ``--protocol NAME`` fixes those settings at once and records the name in
every result, so a report can say which numbers followed it.
"""

from __future__ import annotations

from typing import Any

#: Each protocol: the ``EvalConfig`` fields it fixes, and what it is, for ``--help`` and the docs.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "paper": {
        "fixes": {"features": "inception", "fid_samples": 10_000},
        "about": "Inception FID (torch-fidelity's inception-v3-compat) of 10,000 samples against the whole "
                 "test split, as Lucic et al. 2018 and Ghosh et al. 2020 report MNIST FIDs",
    },
}


def protocol_problem(name: str | None, values: dict[str, Any], test_limit: int | None) -> str | None:
    """Why ``values`` (``EvalConfig`` fields) and a test limit break protocol ``name``, if they do."""
    if name is None:
        return None
    if name not in PROTOCOLS:
        return f"protocol must be one of {', '.join(sorted(PROTOCOLS))} or none, got {name!r}"
    for field, fixed in PROTOCOLS[name]["fixes"].items():
        if values.get(field) != fixed:
            return (f"protocol {name!r} measures with {field.replace('_', '-')} {fixed}, "
                    f"not {values.get(field)!r}; leave out one or the other")
    if test_limit is not None:
        return (f"protocol {name!r} measures against the whole test split, not the first {test_limit} images; "
                "leave out the test limit or the protocol")
    return None
