"""Stage 2 -- generation: ask a model for answers to each problem.

``prompts`` turns a problem into what the model is asked (and its answer back into a program),
``extract`` finds the program in whatever came back, ``backends`` are the ways to reach a model
(vLLM, transformers, an OpenAI-compatible server, a file of recorded answers), ``modelpath`` says
where a model's weights are, and ``sample`` is the ``ap2o-build sample`` command.
"""
