"""``tritonx-openai``: an OpenAI-compatible HTTP frontend over an in-process tritonx
server, the counterpart of Triton's ``python/openai`` frontend.

The parts: ``schemas`` (the OpenAI request and response bodies, pydantic),
``tensors`` (an OpenAI request as a vLLM- or TensorRT-LLM-style inference request,
and the values read back from a response), ``checks`` (what is refused),
``engine`` (models, chat templates, responses), ``streams`` (server-sent events),
``access`` (restricted routes), ``lora`` (LoRA adapters), ``app`` (the FastAPI routes and error bodies) and
``main`` (the command line). Needs the ``openai`` extra (FastAPI, uvicorn, transformers).
"""
