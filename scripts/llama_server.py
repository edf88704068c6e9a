"""Start llama.cpp's OpenAI-compatible server (llama-cpp-python) with CPU weight repacking off.

    python scripts/llama_server.py --model FILE.gguf --host 127.0.0.1 --port 8080 --n_threads 2

Same flags as ``python -m llama_cpp.server``. Why this wrapper: on CPUs with AMX (Sapphire Rapids
and later, like the machine the embedded recording was made on), llama-cpp-python 0.3.36 repacks
the Q4/Q8 weights into AMX buffers at load time and then segfaults on the first decode. Turning
off llama.cpp's "extra buffer types" (``use_extra_bufts``, which ``Llama()`` does not expose) keeps
the plain CPU kernels -- 20-40 tokens/s for a 0.5B Q4 model on 2 cores -- and changes nothing else.
"""

from __future__ import annotations

import llama_cpp.llama_cpp as C

_default_params = C.llama_model_default_params


def _params_without_repacking():
    params = _default_params()
    params.use_extra_bufts = False
    return params


# llama_cpp.Llama looks this function up on the module at construction time
C.llama_model_default_params = _params_without_repacking

if __name__ == "__main__":
    from llama_cpp.server.__main__ import main

    main()
