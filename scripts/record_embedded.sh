#!/usr/bin/env bash
# Re-record the embedded default dataset's answers: builder/data/humaneval-qwen2.5-coder-0.5b-instruct.parquet
#
# What it does, exactly:
#   1. takes Qwen2.5-Coder-0.5B-Instruct as a Q4 GGUF file from $GGUF (the recording was made with
#      qwen2.5-coder-0.5b-instruct-q4.gguf, Q4_K_M, sha256 1d9614638d18...; its name and digest become
#      each answer's model_revision);
#   2. serves it on 127.0.0.1 with llama.cpp's OpenAI-compatible server (llama-cpp-python[server],
#      through scripts/llama_server.py, which turns off the AMX weight repacking that crashes it,
#      `pip install -e ".[server]"`, built with CMAKE_ARGS="-DLLAVA_BUILD=OFF"), $THREADS threads (default 1), niced;
#   3. samples the first $PROBLEMS HumanEval problems (task-id order) x $N answers with OUR sample
#      stage and openai backend: completion prompt, temperature 1.0, top_p 1.0, 512 new tokens, the
#      completion stop strings of builder.generation.prompts, seed 0;
#   4. stops the server.
# Takes ~30-60 min on 2 CPU cores (20-40 tokens/s). llama.cpp on CPU is deterministic for a given
# seed, build and thread count, so a rerun on the same setup gives the same answers; another
# machine or llama.cpp version gives a different sample from the same distribution.
#
#   usage: GGUF=FILE.gguf scripts/record_embedded.sh [OUTPUT]      (env: PROBLEMS=40 N=10 PORT=free THREADS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-builder/data/humaneval-qwen2.5-coder-0.5b-instruct.parquet}
problems=${PROBLEMS:-40}; n=${N:-10}; threads=${THREADS:-1}
port=${PORT:-$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
model_id="Qwen/Qwen2.5-Coder-0.5B-Instruct"

gguf=${GGUF:?set GGUF to the Q4 GGUF file of Qwen2.5-Coder-0.5B-Instruct}
revision="$(basename "$gguf")@sha256:$(sha256sum "$gguf" | cut -c1-12)"
echo "model: $model_id  revision: $revision" >&2

nice -n 10 python scripts/llama_server.py --model "$gguf" --model_alias "$model_id" --host 127.0.0.1 \
    --port "$port" --n_threads "$threads" --n_ctx 2048 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do  # the model loads in a few seconds; wait at most 2 min
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "server exited" >&2; exit 1; }
  sleep 1
done

# The sample stage's own function (what `ap2o-build sample` runs), chunk by chunk so that a killed
# recording resumes where it stopped: chunks already written under $out.chunks/ are kept. Answer k
# of a problem is seeded from (seed, problem id, k) alone, so chunking does not change any answer.
# One chunk: `ap2o-build sample --problems humaneval --limit 40 --backend openai --base-url URL
# --model M --model-revision R --prompt-format completion --n 10 --temperature 1.0 --top-p 1.0
# --max-new-tokens 512 --seed 0 --concurrency 1 --output OUT` writes the same rows in one go.
python - "$out" "http://127.0.0.1:$port/v1" "$model_id" "$revision" "$problems" "$n" <<'PY'
import pathlib, sys
import pyarrow as pa, pyarrow.parquet as pq
from builder.io import write_parquet
from builder.problems.sources import load_problems
from builder.generation.prompts import stop_strings
from builder.generation.sample import sample_problems
from builder.generation.backends import SamplingParams, get_backend, truncate_at_stop

out, url, model, revision, limit, n = sys.argv[1:]
problems = load_problems("humaneval", limit=int(limit))          # HumanEval/0 .. HumanEval/{limit-1}
params = SamplingParams(n=int(n), temperature=1.0, top_p=1.0, max_new_tokens=512, seed=0)  # stop: prompts'
backend = get_backend("openai", base_url=url, model=model, model_revision=revision, concurrency=1)
chunks = pathlib.Path(out + ".chunks"); chunks.mkdir(exist_ok=True)
parts = []
for start in range(0, problems.num_rows, 8):
    part = chunks / f"{start:04d}.parquet"
    if not part.exists():
        write_parquet(sample_problems(problems.slice(start, 8), backend, params, "completion"), part)
    parts.append(pq.read_table(part))
table = pa.concat_tables(parts)
# Chunks resumed from disk may predate a change of builder.generation.prompts' stop strings: apply today's.
# Truncating at a stop string is exactly what sampling with it gives (a stop string only ends a
# generation, it never changes the tokens before it); on a fresh recording this changes nothing.
rows = table.to_pylist()
programs = [r["prompt"] + truncate_at_stop(r["completion"][len(r["prompt"]):], stop_strings(r, "completion"))
            for r in rows]
table = table.set_column(table.schema.get_field_index("completion"), table.schema.field("completion"),
                         pa.array(programs, pa.string()))
write_parquet(table, out)
print(f"wrote {sum(p.num_rows for p in parts)} answers -> {out}", file=sys.stderr)
PY
rm -rf "$out.chunks"
