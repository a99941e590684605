#!/usr/bin/env python3
"""Writes a deep Hugging Face parity fixture with transformers (run it on the GPU machine).

A Llama-3.2-1B-shaped checkpoint (16 layers, hidden 2048, 32/8 heads, ffn 8192, the real vocabulary
of 128256, tied embeddings, llama3 rope scaling) with seeded random weights saved in bf16, and the
outputs transformers computes for it in float32 (eager attention) in the format of
tests/fixtures/hf/README.md: input_ids [2, S], logits, loss, grad.<name>, step1.<name> (one
torch.optim.AdamW step, lr 1e-2, betas 0.9/0.95, eps 1e-8, weight decay 0.1), attention_mask,
logits_right_padded, generate_prompt, generate_ids, generate_topk_ids, generate_topk_gaps. It is
too big to keep in the repository (2.5 GB of bf16 weights; the f32 gradients and step-1 weights make reference.safetensors
about 10 GB): write it to a scratch folder and
run `graft parity --checkpoint DIR --device cuda --dtype bf16` (the gate of parity.h grows with
the depth) next to `--dtype f32`.

Also writes reference_lowp.json: transformers' own bf16 logits error against its f32 logits
(bf16 weights with SDPA and eager, and f32 weights under bf16 autocast), the figures the bf16
gate is checked against.

    python3 scripts/make-deep-fixture.py --out /tmp/deep-llama --layers 16 --seq 256
"""
import argparse
import json
import os

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    cfg = LlamaConfig(
        vocab_size=a.vocab, hidden_size=2048, intermediate_size=8192, num_hidden_layers=a.layers,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, hidden_act="silu",
        max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001,
        initializer_range=0.02)
    cfg._attn_implementation = "eager"  # as tests/model/fixtures/make_refs.py does
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out, max_shard_size="2GB")  # bf16 on disk, two shards

    dev = torch.device(a.device)
    # The f32 reference is loaded afresh from the bf16 files, not made by model.to(float32):
    # Module.to(bfloat16) also rounds the rotary embedding's inv_freq buffer, and converting back
    # keeps the rounded frequencies (0.6641 for 0.6636...). At 256 positions and 16 layers those
    # move transformers' own f32 logits by 5.1e-2 from the exact-frequency model that every
    # from_pretrained load (and graft) computes, which is twice bf16's whole error.
    del model
    ref = LlamaForCausalLM.from_pretrained(a.out, dtype=torch.float32,
                                           attn_implementation="eager").to(dev).eval()
    inv = ref.model.rotary_emb.inv_freq
    assert inv.dtype == torch.float32 and not torch.equal(inv, inv.bfloat16().float()), \
        "the f32 reference's rotary inv_freq is rounded to bf16"
    g = torch.Generator().manual_seed(a.seed + 1)
    B, S = 2, a.seq
    ids = torch.randint(0, a.vocab, (B, S), generator=g).to(dev)
    mask = torch.ones(B, S, dtype=torch.long, device=dev)
    mask[1, S * 2 // 3:] = 0
    out = {"input_ids": ids.cpu(), "attention_mask": mask.cpu()}
    with torch.no_grad():
        out["logits_right_padded"] = ref(ids, attention_mask=mask).logits.float().cpu()
    res = ref(ids, labels=ids)
    res.loss.backward()
    out["logits"] = res.logits.detach().float().cpu()
    out["loss"] = res.loss.detach().float().reshape(1).cpu()
    names = [n for n, _ in ref.named_parameters()]
    for n, p in ref.named_parameters():
        out["grad." + n] = p.grad.detach().float().cpu()
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1)
    opt.step()
    for n, p in ref.named_parameters():
        out["step1." + n] = p.detach().float().cpu()
    # Generation from the original weights (reload: the step changed them).
    gen_model = LlamaForCausalLM.from_pretrained(a.out, dtype=torch.float32,
                                                 attn_implementation="eager").to(dev).eval()
    prompt = ids[:1, :5]
    with torch.no_grad():
        res_gen = gen_model.generate(prompt, max_new_tokens=8, do_sample=False,
                                     attention_mask=torch.ones_like(prompt), output_scores=True,
                                     return_dict_in_generate=True)
    gen = res_gen.sequences
    out["generate_prompt"] = prompt.cpu()
    out["generate_ids"] = gen.cpu()
    # Per generated step, the 16 highest tokens and their gaps below the top-1 logit over the rms
    # of the logits row: graft parity's generation gate lets a low-precision run take another of
    # these where its gap is within the logits' error (parity.h generation_consistent). Random
    # weights give near ties (three tokens within 0.015 rms at step 2).
    topk_ids, topk_gaps = [], []
    for sc in res_gen.scores:
        row = sc[0].float()
        top = torch.topk(row, 16)
        topk_ids.append(top.indices.cpu())
        topk_gaps.append(((top.values[0] - top.values) / row.pow(2).mean().sqrt()).cpu())
    out["generate_topk_ids"] = torch.stack(topk_ids).to(torch.int64)
    out["generate_topk_gaps"] = torch.stack(topk_gaps).to(torch.float32)
    from safetensors.torch import save_file
    save_file({k: v.contiguous().clone() for k, v in out.items()}, os.path.join(a.out, "reference.safetensors"))

    # transformers' own low-precision error on the same inputs.
    lowp = {}
    with torch.no_grad():
        f32 = gen_model(ids).logits.float()
        for impl in ("sdpa", "eager"):
            m = LlamaForCausalLM.from_pretrained(a.out, dtype=torch.bfloat16,
                                                 attn_implementation=impl).to(dev).eval()
            lowp[f"bf16_weights_{impl}"] = rel(m(ids).logits, f32)
            del m
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            lowp["f32_weights_bf16_autocast"] = rel(gen_model(ids).logits, f32)
    meta = {"loss": float(out["loss"]), "transformers": transformers.__version__,
            "torch": torch.__version__, "layers": a.layers, "vocab": a.vocab, "seq": S,
            "adamw": {"lr": 1e-2, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1},
            "labels": "input_ids (shifted inside the model)",
            "attention": f"eager, float32, {dev.type}",
            "padding_case": f"attention_mask row 1 zero from position {S * 2 // 3}",
            "transformers_lowp_logits_rel_err": lowp, "parameters": len(names)}
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta["transformers_lowp_logits_rel_err"]))


if __name__ == "__main__":
    main()
