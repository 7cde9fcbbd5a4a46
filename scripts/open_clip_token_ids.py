"""Print open_clip's token ids for the strings of cloob/src/tokenizer.rs's tests, as Rust arrays.

The golden ids in those tests come from this script run against open_clip's own `tokenizer.py` (which needs
`ftfy` and `regex` from PyPI; torch is stubbed, only its tensor constructors are used):

    python3 scripts/open_clip_token_ids.py path/to/open_clip/src/open_clip/tokenizer.py
"""
import importlib.util
import json
import sys
import types

import numpy as np

torch = types.ModuleType("torch")
torch.LongTensor = torch.Tensor = np.ndarray
torch.long = np.int64
torch.zeros = lambda *shape, dtype=None: np.zeros(shape, dtype=np.int64)
torch.tensor = lambda data, **_: np.array(data, dtype=np.int64)
sys.modules["torch"] = torch

spec = importlib.util.spec_from_file_location("open_clip_tokenizer", sys.argv[1])
tok = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tok)
t = tok.SimpleTokenizer()

CASES = json.loads(sys.stdin.read())
for text, context in CASES:
    ids = [int(i) for i in t([text], context_length=context)[0]]
    while ids and ids[-1] == 0:
        ids.pop()
    print(f"({json.dumps(text, ensure_ascii=True)}, {context}, &{ids}),")
