"""How a model directory's tokenizer is loaded, in one place: by the toolkit, and by the Python models of a
generated Triton repository, into whose version directories this file is copied. It therefore imports only
the standard library and (lazily) transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_local_tokenizer(directory: Path | str) -> Any:
    """The tokenizer of a local directory, never code from it. One whose tokenizer_config.json names
    PreTrainedTokenizerFast (Llama 3.1's and Swallow's) is loaded by that class, which is what AutoTokenizer
    returns for it too: AutoTokenizer's import pulls in torch through transformers' config code (6.3 s
    against 2.9 s here), seconds of CPU in every Python model of a repository."""
    directory = Path(directory)
    config = directory / "tokenizer_config.json"
    named = (
        json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class") if config.is_file() else None
    )
    if named == "PreTrainedTokenizerFast":
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(directory))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
