"""numba's compile cost is paid once: a second process loads every kernel the research paths use.

The first process runs a parity check and sweeps of both vectorized strategies, compiling into
numba's disk cache what is not there yet; a second process does the same and must compile nothing:
every vectorbt and qlcore kernel it called was loaded from the cache.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher
    from qlcore.research import parity, sweep

    parity("sma_cross", {"fast": 10, "slow": 30}, "IBM", fee_bps=10)
    sweep("sma_cross", {"fast": [5, 10], "slow": [30, 60]}, "IBM", progress=False)
    sweep("mean_reversion", {"window": [10, 20]}, "MSFT", fraction=0.5, progress=False)

    compiled, loaded = [], []
    for name, module in list(sys.modules.items()):
        if not name.startswith(("vectorbt", "qlcore")):
            continue
        for attr, obj in list(vars(module).items()):
            if isinstance(obj, CPUDispatcher) and obj.signatures:
                label = f"{name}.{attr}"
                if isinstance(obj._cache, NullCache) or obj.stats.cache_misses:
                    compiled.append(label)
                else:
                    loaded.append(label)
    print(json.dumps({"compiled": sorted(set(compiled)), "loaded": sorted(set(loaded))}))
    """
)


def run() -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_second_process_compiles_nothing():
    run()  # fills the cache if this environment has never compiled these kernels
    second = run()
    assert second["compiled"] == []
    assert "vectorbt.portfolio.nb.simulate_from_signals_nb" in second["loaded"]
    assert "qlcore.research.kernels.sma_cross_signals_nb" in second["loaded"]
    assert "qlcore.research.kernels.order_stats_nb" in second["loaded"]
