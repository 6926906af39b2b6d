#!/usr/bin/env python3
"""Reads checkpoints that srlm wrote with Hugging Face transformers itself and compares with what srlm computed.

Runs where transformers is installed (a GPU machine lent to a session; this repository's machines cannot install
it). Prepare the inputs on a machine with .NET (tests/device/README.md), then:

    python3 tests/device/transformers_check.py .devcheck

random/NAME/  a random checkpoint of one config (HfReferenceTests with SRLM_HF_EXPORT set), with ids.json and
              ours.json (srlm's logits for those ids): transformers' logits must agree within 1e-4.
trained/greedy.json and trained/MODEL/: checkpoints trained by srlm, with srlm's greedy answers (`srlm generate
              --chat --temperature 0`): transformers' greedy answers, cut at the template's stop string, must be equal.
Exit 0 only when every check passes; one line per check.
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

STOPS = {"plain": ["### Instruction:"], "chatml": ["<|im_end|>"], "zephyr": ["</s>", "<|user|>"], "llama2": ["[INST]"]}


def check_random(root, failures):
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        ids = torch.tensor(json.load(open(os.path.join(d, "ids.json")))["ids"])
        ours = json.load(open(os.path.join(d, "ours.json")))
        ours = torch.tensor(ours["logits"], dtype=torch.float32).reshape(ours["shape"])
        model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            theirs = model(ids).logits.float()
        diff = (theirs - ours).abs().max().item()
        scale = max(1.0, theirs.abs().max().item())
        ok = diff < 1e-4 * scale
        print(f"{'ok  ' if ok else 'FAIL'} logits {name} ({type(model).__name__}): max |srlm - transformers| = {diff:.3g} (logit scale {scale:.3g})")
        if not ok:
            failures.append(name)


def check_greedy(root, failures):
    cases = json.load(open(os.path.join(root, "greedy.json")))
    loaded = {}
    for i, case in enumerate(cases):
        d = os.path.join(root, case["model"])
        if d not in loaded:
            template = json.load(open(os.path.join(d, "srlm.json")))["prompt_template"]
            loaded[d] = (AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(d), template)
        model, tok, template = loaded[d]
        prompt = template["template"].replace("{instruction}", case["instruction"])
        ids = tok(prompt, return_tensors="pt").input_ids
        if ids[0, 0].item() != tok.bos_token_id:  # srlm's tokenizers add BOS (tokenizer_config add_bos_token)
            ids = torch.cat([torch.tensor([[tok.bos_token_id]]), ids], dim=1)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=case["max_new_tokens"],
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        for stop in STOPS.get(template["name"], []):
            if stop in text:
                text = text[: text.index(stop)]
        ok = text.strip() == case["ours"].strip()
        print(f"{'ok  ' if ok else 'FAIL'} greedy {case['model']} #{i} ({ids.shape[1]} prompt tokens): transformers {text.strip()[:60]!r}"
              + ("" if ok else f" vs srlm {case['ours'].strip()[:60]!r}"))
        if not ok:
            failures.append(f"{case['model']}#{i}")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else ".devcheck"
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    failures = []
    if os.path.isdir(os.path.join(root, "random")):
        check_random(os.path.join(root, "random"), failures)
    if os.path.isfile(os.path.join(root, "trained", "greedy.json")):
        check_greedy(os.path.join(root, "trained"), failures)
    print(f"transformers check: {'all passed' if not failures else 'FAILED: ' + ', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
