"""The builder: problems -> sampled answers -> sandboxed verdicts -> error notebook, pairs, card."""

import os as _os

# Set here because every console script (ap2o-build, ap2o-train, ap2o-eval) imports this package
# before torch, and libgomp reads the setting once, when torch loads it. Its default keeps idle
# threads spinning; on a CPU shared with other work (the sandbox's workers, a llama.cpp server,
# other jobs) the spinning threads hold the cores the working ones wait for. Greedy generation of
# 16 x 128 tokens with a 2-layer model on 2 threads took 12.7 s by default and 0.4 s passive
# (load average 3-5 on 2 cores; 1 thread: 0.4 s). A value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
