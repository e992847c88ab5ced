"""AutoInterp explainers/judges (plugin kind ``judge``): the contract (``base``), an
OpenAI-compatible HTTP client (``openai_compatible``), a local transformers model (``local``),
the on-disk prompt cache (``cache``) and a loopback chat-completions server (``server``)."""
