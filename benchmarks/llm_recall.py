"""How fast does the demo LLM learn in-context retrieval from scratch? (diagnostic)

    .venv/bin/python benchmarks/llm_recall.py --pairs 2 --steps 8000

Caption2Bbox asks the LLM to find, among the image tokens, the one whose content matches the
caption and copy what it holds: in-context retrieval, a skill a pretrained LLM brings and our
randomly initialised one must learn. This script measures how long that takes on the plainest
form of the task, associative recall in text: ``k1 v1 k2 v2 ... <sep> kq -> vq`` with random
key and value tokens, loss on ``vq`` only. The LLM is the demo preset's (with the overrides of
``demo_quality.HP``), trained with the harness's optimizer settings. Prints accuracy on fresh
sequences every ``--every`` steps next to chance (1 / pairs: a model that copies some value of
the sequence without retrieving). The batch matters most: two pairs stay at chance for 24,000
steps at the recipe's batch of 32 and pass 0.95 within 2,000 steps at ``--batch 128``.
"""

from __future__ import annotations

import argparse
import time

import demo_quality as dq
import torch

from granvit_pipeline.model import GranViT, get_preset

KEYS, VALUES = range(10, 50), range(60, 160)  # token ids; 5 is the query separator
SEPARATOR = 5


def recall_batch(size: int, pairs: int, gen: torch.Generator) -> torch.Tensor:
    """``(size, 2 * pairs + 3)`` token ids: pairs, separator, query key, its value."""
    keys = torch.stack([torch.randperm(len(KEYS), generator=gen)[:pairs] for _ in range(size)])
    keys += KEYS.start
    values = torch.randint(VALUES.start, VALUES.stop, (size, pairs), generator=gen)
    pick = torch.randint(0, pairs, (size,), generator=gen)
    rows = torch.arange(size)
    return torch.cat([
        torch.stack([keys, values], dim=2).reshape(size, -1),
        torch.full((size, 1), SEPARATOR), keys[rows, pick, None], values[rows, pick, None],
    ], dim=1)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=dq.HP["stage2"]["lr"])
    parser.add_argument("--every", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(dq.HP["threads"])
    torch.manual_seed(0)
    llm = GranViT(get_preset(dq.HP["preset"], **dq.HP["model_overrides"])).llm
    opt = torch.optim.AdamW(llm.parameters(), lr=args.lr, **dq.HP["adamw"])
    gen, held_out = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    test = recall_batch(1024, args.pairs, held_out)
    print(f"associative recall, {args.pairs} pairs, batch {args.batch}, lr {args.lr}: "
          f"accuracy (chance {1 / args.pairs:.2f})")  # fmt: skip
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        ids = recall_batch(args.batch, args.pairs, gen)
        labels = torch.full_like(ids, -100)
        labels[:, -1] = ids[:, -1]
        loss = llm(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(llm.parameters(), dq.HP["grad_clip"])
        opt.step()
        if step % args.every == 0:
            with torch.no_grad():
                hits = llm(input_ids=test[:, :-1]).logits[:, -1].argmax(-1) == test[:, -1]
            print(f"  step {step:>6}  accuracy {hits.float().mean():.3f}  "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
